"""Where the seed is silent, users answers as the original Go service does
(faringet/goshop, services/users/internal/adapters/http/handlers/*_test.go)."""

import pytest

from tests.support import count_rows

REQUIRED = "email and password are required"


@pytest.mark.parametrize("path", ["/v1/users/register", "/v1/users/login"])
def test_malformed_json_is_invalid_json(testapp, path):
    response = testapp.post(path, b'{"email": ', content_type="application/json", status=400)
    assert response.json["error"] == "invalid json"


@pytest.mark.parametrize("path", ["/v1/users/register", "/v1/users/login"])
@pytest.mark.parametrize(
    "body",
    [
        {"email": "", "password": ""},
        {"email": "", "password": "long enough password"},
        {"email": "someone@example.com", "password": ""},
        {"password": "long enough password"},
        {"email": "someone@example.com"},
        {},
    ],
)
def test_an_empty_or_missing_email_or_password_is_required(testapp, db_connection, path, body):
    response = testapp.post_json(path, body, status=400)
    assert response.json["error"] == REQUIRED
    assert count_rows(db_connection, "users.users") == 0
    assert count_rows(db_connection, "users.login_failures") == 0


def test_a_present_but_malformed_email_is_still_invalid_email(testapp):
    response = testapp.post_json("/v1/users/register", {"email": "bad-email", "password": "StrongPass123!"}, status=400)
    assert response.json["error"] == "invalid email"


def test_a_present_but_short_password_is_still_weak(testapp):
    response = testapp.post_json("/v1/users/register", {"email": "user@example.com", "password": "1234567"}, status=400)
    assert response.json["error"] == "weak password"


@pytest.mark.parametrize("path", ["/live", "/ready", "/v1/db/ping"])
def test_health_endpoints_are_never_cached(testapp, path):
    assert testapp.get(path).headers["Cache-Control"] == "no-store"


def test_token_answers_are_never_cached(testapp):
    testapp.post_json("/v1/users/register", {"email": "nc@example.com", "password": "long enough password"})
    response = testapp.post_json("/v1/users/login", {"email": "nc@example.com", "password": "long enough password"})
    assert response.headers["Cache-Control"] == "no-store"


def test_the_public_keys_may_be_cached(testapp):
    assert testapp.get("/.well-known/jwks.json").headers["Cache-Control"] == "public, max-age=300"
