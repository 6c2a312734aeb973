import datetime as dt

import jwt
import pytest

from tests.support import EXPIRED, INVALID, NO_TOKEN, bearer, expired_copy, login, register


@pytest.fixture
def tokens(testapp):
    user = register(testapp, "me@example.com")
    return user, login(testapp, "me@example.com")


def test_me_describes_the_access_token_in_the_seeds_fields(testapp, tokens):
    user, pair = tokens
    body = testapp.get("/v1/users/me", headers=bearer(pair["access_token"])).json
    assert set(body) == {"uid", "email", "issuer", "subject", "issued_at", "expires_at"}
    assert body["uid"] == user["id"]
    assert body["email"] == "me@example.com"
    assert body["issuer"] == "goshop-users"
    assert body["subject"] == "access"
    for field in ("issued_at", "expires_at"):
        assert body[field].endswith("Z")
        dt.datetime.strptime(body[field], "%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"],
    ids=["absent", "empty", "scheme-only", "scheme-space", "basic", "other-scheme"],
)
def test_me_without_a_bearer_token_is_unauthorized(testapp, header):
    headers = {} if header is None else {"Authorization": header}
    response = testapp.get("/v1/users/me", headers=headers, status=401)
    assert response.json == {"error": "unauthorized"}
    # RFC 6750 3.1: no credentials (another scheme counts as none), no error code.
    assert response.headers["WWW-Authenticate"] == NO_TOKEN


def test_me_with_a_garbage_token_is_an_invalid_token(testapp):
    response = testapp.get("/v1/users/me", headers=bearer("not.a.jwt"), status=401)
    assert response.json == {"error": "invalid token"}
    assert response.headers["WWW-Authenticate"] == INVALID


def test_me_refuses_a_refresh_token(testapp, tokens):
    _user, pair = tokens
    response = testapp.get("/v1/users/me", headers=bearer(pair["refresh_token"]), status=401)
    assert response.json == {"error": "invalid token"}
    assert response.headers["WWW-Authenticate"] == INVALID


def test_an_expired_access_token_is_told_apart_in_the_challenge_not_the_body(testapp, users_app, tokens):
    _user, pair = tokens
    expired = expired_copy(pair["access_token"], users_app.registry.signing_key)
    response = testapp.get("/v1/users/me", headers=bearer(expired), status=401)
    assert response.json == {"error": "invalid token"}
    assert response.headers["WWW-Authenticate"] == EXPIRED


def test_an_expired_refresh_token_used_as_an_access_token_is_invalid_not_expired(testapp, users_app, tokens):
    _user, pair = tokens
    expired = expired_copy(pair["refresh_token"], users_app.registry.signing_key)
    response = testapp.get("/v1/users/me", headers=bearer(expired), status=401)
    assert response.headers["WWW-Authenticate"] == INVALID


def test_me_refuses_a_token_with_a_tampered_payload(testapp, tokens):
    _user, pair = tokens
    header, _payload, signature = pair["access_token"].split(".")
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    claims["sub"] = "00000000-0000-0000-0000-000000000000"
    forged_payload = jwt.utils.base64url_encode(jwt.api_jws.json.dumps(claims).encode()).decode()
    response = testapp.get("/v1/users/me", headers=bearer(f"{header}.{forged_payload}.{signature}"), status=401)
    assert response.json == {"error": "invalid token"}
    assert response.headers["WWW-Authenticate"] == INVALID


def test_me_refuses_an_unsigned_alg_none_token(testapp, tokens):
    _user, pair = tokens
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    response = testapp.get("/v1/users/me", headers=bearer(unsigned), status=401)
    assert response.headers["WWW-Authenticate"] == INVALID
