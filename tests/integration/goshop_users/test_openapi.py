def test_openapi_document_lists_every_users_route(testapp):
    document = testapp.get("/openapi.json").json
    assert document["swagger"] == "2.0"
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
    body = next(p for p in register["parameters"] if p["in"] == "body")
    schema = body["schema"]
    if "$ref" in schema:
        schema = document["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
    assert set(schema["properties"]) == {"email", "password"}
    assert set(schema["required"]) == {"email", "password"}
    assert schema["properties"]["email"]["type"] == "string"
    assert register["consumes"] == ["application/json"]
