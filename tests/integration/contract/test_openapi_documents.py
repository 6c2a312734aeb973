"""Every service's /openapi.json is a valid OpenAPI document, and says for
every operation what it answers."""

from __future__ import annotations

import pytest
import requests
from openapi_spec_validator import validate

from goshop_common.currencies import ISO_4217

SERVICES = ("users", "orders", "payments", "ops", "gateway")


@pytest.fixture(scope="module")
def documents(upstream_urls, gateway_url) -> dict[str, dict]:
    urls = {**upstream_urls, "gateway": gateway_url}
    return {name: requests.get(f"{urls[name]}/openapi.json", timeout=10).json() for name in SERVICES}


@pytest.mark.parametrize("service", SERVICES)
def test_the_document_is_valid_openapi(documents, service):
    validate(documents[service])


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_documents_a_success_and_its_errors_in_the_envelope(documents, service):
    for path, item in documents[service]["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert any(s.startswith("2") for s in statuses), (method, path)
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema["properties"]["error"]["type"] == "string", (method, path, status)


def test_the_rules_the_validators_enforce_are_in_the_document(documents, settings):
    orders = documents["orders"]["paths"]["/v1/orders"]
    body = orders["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert body["amount_cents"]["minimum"] == 1
    assert body["amount_cents"]["maximum"] == settings.order_max_amount_cents
    assert body["currency"]["enum"] == [*sorted(ISO_4217), None]
    key = next(p for p in orders["post"]["parameters"] if p["name"] == "Idempotency-Key")
    assert key["in"] == "header"
    assert key["schema"]["pattern"] == "^(?:[\\x21-\\x7e]{1,255})$"
    limit = next(p for p in orders["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
    assert orders["get"]["security"] == [{"bearer": []}]
    assert documents["orders"]["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    register = documents["users"]["paths"]["/v1/users/register"]["post"]
    password = register["requestBody"]["content"]["application/json"]["schema"]["properties"]["password"]
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
