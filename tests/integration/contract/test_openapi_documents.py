"""Every service's /openapi.json is a valid OpenAPI document, and says for
every operation what it answers."""

from __future__ import annotations

import json

import pytest
import requests
from openapi_spec_validator import validate

from goshop_domain.currencies import ISO_4217

SERVICES = ("users", "orders", "payments", "ops", "gateway")
REF = "#/components/schemas/"


def resolve(document: dict, schema: dict) -> dict:
    """``schema``, or the component schema it refers to."""
    ref = schema.get("$ref")
    return document["components"]["schemas"][ref.removeprefix(REF)] if ref else schema


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


@pytest.fixture(scope="module")
def documents(upstream_urls, gateway_url) -> dict[str, dict]:
    urls = {**upstream_urls, "gateway": gateway_url}
    return {name: requests.get(f"{urls[name]}/openapi.json", timeout=10).json() for name in SERVICES}


@pytest.mark.parametrize("service", SERVICES)
def test_the_document_is_valid_openapi(documents, service):
    validate(documents[service])


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_documents_a_success_a_client_error_and_its_errors_in_the_envelope(documents, service):
    document = documents[service]
    for method, path, operation in operations(document):
        statuses = set(operation["responses"])
        assert any(s.startswith("2") for s in statuses), (method, path)
        assert any(s.startswith("4") for s in statuses), (method, path)
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                schema = resolve(document, response["content"]["application/json"]["schema"])
                assert schema["properties"]["error"]["type"] == "string", (method, path, status)


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_is_tagged_with_a_resource_the_document_describes(documents, service):
    document = documents[service]
    described = {tag["name"]: tag["description"] for tag in document["tags"]}
    used = set()
    for method, path, operation in operations(document):
        assert len(operation["tags"]) == 1, (method, path)
        assert operation["tags"][0] in described, (method, path)
        used.add(operation["tags"][0])
    assert used == set(described)
    assert all(described.values())


@pytest.mark.parametrize("service", SERVICES)
def test_every_body_is_a_named_shape_and_every_response_has_one_media_type(documents, service):
    document = documents[service]
    schemas = document["components"]["schemas"]
    for method, path, operation in operations(document):
        bodies = [("request", operation["requestBody"])] if "requestBody" in operation else []
        bodies += list(operation["responses"].items())
        for status, answer in bodies:
            content = answer.get("content", {})
            assert len(content) <= 1, (method, path, status, list(content))
            for media_type, each in content.items():
                if media_type == "application/json":
                    assert each["schema"]["$ref"].removeprefix(REF) in schemas, (method, path, status)
    # The same shape is one schema wherever it is used: the envelope of every error.
    errors = {
        json.dumps(operation["responses"][status]["content"]["application/json"]["schema"])
        for _, _, operation in operations(document)
        for status in operation["responses"]
        if status.startswith("4")
    }
    assert errors == {json.dumps({"$ref": f"{REF}Error"})}


def test_the_gateway_defines_each_shape_as_the_service_that_owns_it_does(documents):
    gateway = documents["gateway"]["components"]["schemas"]
    for service, name in (("users", "TokenPair"), ("users", "Session"), ("orders", "Order"), ("payments", "Payment")):
        assert gateway[name] == documents[service]["components"]["schemas"][name], name
    for service in SERVICES:
        assert documents[service]["components"]["schemas"]["Error"] == gateway["Error"], service


@pytest.mark.parametrize(("service", "path"), [("orders", "/v1/orders"), ("gateway", "/v1/checkout")])
def test_the_idempotency_rule_is_stated_where_a_generator_reads_it(documents, service, path):
    operation = documents[service]["paths"][path]["post"]
    key = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
    for promise in ("same body replays", "another body is refused with 422", "409"):
        assert promise in " ".join(key["description"].split()), promise
    assert "bound to its first request's body" in operation["responses"]["422"]["description"]


def test_the_timeline_in_markdown_has_a_path_of_its_own(documents):
    for service in ("ops", "gateway"):
        paths = documents[service]["paths"]
        assert list(paths["/v1/ops/orders/{id}/timeline"]["get"]["responses"]["200"]["content"]) == ["application/json"]
        assert list(paths["/v1/ops/orders/{id}/timeline.md"]["get"]["responses"]["200"]["content"]) == ["text/markdown"]


def test_the_rules_the_validators_enforce_are_in_the_document(documents, settings):
    orders = documents["orders"]["paths"]["/v1/orders"]
    body = resolve(documents["orders"], orders["post"]["requestBody"]["content"]["application/json"]["schema"])
    body = body["properties"]
    assert body["amount_cents"]["minimum"] == 1
    assert body["amount_cents"]["maximum"] == settings.order_max_amount_cents
    # Named once; null (the default) is an alternative of its own.
    currency, null = body["currency"]["anyOf"]
    assert resolve(documents["orders"], currency)["enum"] == sorted(ISO_4217)
    assert null == {"type": "string", "nullable": True, "enum": [None]}
    assert body["currency"]["default"] == settings.default_currency
    key = next(p for p in orders["post"]["parameters"] if p["name"] == "Idempotency-Key")
    assert key["in"] == "header"
    assert key["schema"]["pattern"] == "^(?:[\\x21-\\x7e]{1,255})$"
    limit = next(p for p in orders["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
    assert orders["get"]["security"] == [{"bearer": []}]
    assert documents["orders"]["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    register = documents["users"]["paths"]["/v1/users/register"]["post"]
    password = resolve(documents["users"], register["requestBody"]["content"]["application/json"]["schema"])
    password = password["properties"]["password"]
    assert (password["minLength"], password["maxLength"]) == (
        settings.password_min_length,
        settings.password_max_length,
    )
    assert {"201", "400", "409", "413", "415"} <= set(register["responses"])
    assert "429" in documents["users"]["paths"]["/v1/users/login"]["post"]["responses"]


def test_the_gateway_documents_each_route_as_its_upstream_does(documents):
    gateway, users = documents["gateway"]["paths"], documents["users"]["paths"]
    register = gateway["/v1/users/register"]["post"]
    assert register["requestBody"] == users["/v1/users/register"]["post"]["requestBody"]
    assert {"502", "504"} <= set(register["responses"])
    checkout = gateway["/v1/checkout"]["post"]
    assert "201" in checkout["responses"]
    assert any(p["name"] == "Idempotency-Key" for p in checkout["parameters"])


@pytest.mark.parametrize("service", SERVICES)
def test_every_document_serves_its_operations_where_it_is_served_and_says_every_operations_security(documents, service):
    document = documents[service]
    assert document["servers"] == [{"url": "/"}]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            # [] is "no credentials"; a missing key would defer to a default.
            assert "security" in operation, (method, path)
            if operation["security"]:
                assert "401" in operation["responses"], (method, path)


def test_public_operations_say_they_need_no_credentials_and_the_gateway_keeps_each_upstreams_scheme(documents):
    gateway = documents["gateway"]["paths"]
    for method, path in (("post", "/v1/users/register"), ("post", "/v1/users/login"), ("get", "/ready")):
        assert gateway[path][method]["security"] == [], path
    assert gateway["/v1/users/me"]["get"]["security"] == [{"bearer": []}]
    ops = {
        scheme
        for path, item in gateway.items()
        if path.startswith("/v1/ops/")
        for operation in item.values()
        for requirement in operation["security"]
        for scheme in requirement
    }
    assert ops == {"operator"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_401_of_a_secured_operation_declares_its_challenge(documents, service):
    for path, item in documents[service]["paths"].items():
        for method, operation in item.items():
            if operation.get("security"):
                challenge = operation["responses"]["401"]["headers"]["WWW-Authenticate"]
                assert challenge["required"], (method, path)
                assert "invalid_token" in challenge["description"], (method, path)


def test_the_gateway_documents_an_upstreams_401_as_the_upstream_does(documents):
    gateway, users = documents["gateway"]["paths"], documents["users"]["paths"]
    for method, path in (("get", "/v1/users/sessions"), ("get", "/v1/users/me")):
        assert gateway[path][method]["responses"]["401"] == users[path][method]["responses"]["401"], path
    assert "session of the access token has ended" in str(gateway["/v1/users/sessions"]["get"]["responses"]["401"])
