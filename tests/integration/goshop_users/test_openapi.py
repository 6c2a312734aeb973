def test_openapi_document_lists_every_users_route(testapp):
    document = testapp.get("/openapi.json").json
    assert document["openapi"].startswith("3.")
    paths = set(document["paths"])
    assert {
        "/v1/users/register",
        "/v1/users/login",
        "/v1/users/me",
        "/v1/users/refresh",
        "/v1/users/logout",
        "/v1/users/logout_all",
        "/live",
        "/ready",
        "/v1/db/ping",
        "/.well-known/jwks.json",
    } <= paths


def test_openapi_request_bodies_come_from_the_colander_schemas(testapp):
    document = testapp.get("/openapi.json").json
    register = document["paths"]["/v1/users/register"]["post"]
    ref = register["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/NewAccount"
    schema = document["components"]["schemas"]["NewAccount"]
    assert set(schema["properties"]) == {"email", "password"}
    assert set(schema["required"]) == {"email", "password"}
    assert schema["properties"]["email"]["type"] == "string"
    assert list(register["requestBody"]["content"]) == ["application/json"]
