"""Bad input gets a clear 4xx JSON error and changes nothing — on every endpoint."""

import io
import json

import pytest
import webob

from tests.support import SavepointSeam, bearer, login, register, table_snapshot

JSON_ENDPOINTS = {
    "/v1/users/register": {"email": "new@example.com", "password": "long enough password"},
    "/v1/users/login": {"email": "new@example.com", "password": "long enough password"},
    "/v1/users/refresh": {"refresh_token": "x"},
    "/v1/users/logout": {"refresh_token": "x"},
}

MALFORMED_BODIES = {
    "not-json": b"{not json",
    "truncated": b'{"email": "a@b.io", "password": ',
    "array": b"[]",
    "array-of-object": b'[{"email": "a@b.io"}]',
    "string": b'"hello"',
    "number": b"42",
    "null": b"null",
    "true": b"true",
    "empty-object": b"{}",
    "empty": b"",
    "invalid-utf8": b'{"email": "\xff\xfe"}',
    "nul-bytes": b'{"email": "a\\u0000@b.io", "password": "\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000"}',
    "deeply-nested": b'{"email": ' + b"[" * 5000 + b"]" * 5000 + b"}",
}

WRONG_TYPES = [None, 123, 12.5, True, [], {}, ["a@b.io"], {"$ne": ""}]


@pytest.fixture
def seeded(testapp):
    """One user with a live session, so 'nothing changed' has something to protect."""
    user = register(testapp, "seed@example.com")
    return login(testapp, user["email"])


def _assert_json_4xx(response):
    assert 400 <= response.status_int < 500, response.status
    assert response.content_type == "application/json"
    body = response.json
    assert isinstance(body["error"], str)
    assert body["error"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_malformed_bodies_get_a_json_4xx_and_change_nothing(testapp, db_connection, seeded, path, body):
    before = table_snapshot(db_connection)
    response = testapp.post(path, body, content_type="application/json", expect_errors=True)
    _assert_json_4xx(response)
    assert table_snapshot(db_connection) == before


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_every_field_of_the_wrong_type_gets_a_json_400(testapp, db_connection, seeded, path):
    before = table_snapshot(db_connection)
    for field in JSON_ENDPOINTS[path]:
        for wrong in WRONG_TYPES:
            body = dict(JSON_ENDPOINTS[path], **{field: wrong})
            response = testapp.post_json(path, body, expect_errors=True)
            assert response.status_int == 400, (field, wrong, response.text)
            _assert_json_4xx(response)
    assert table_snapshot(db_connection) == before


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_every_missing_field_gets_a_json_400(testapp, db_connection, seeded, path):
    before = table_snapshot(db_connection)
    for field in JSON_ENDPOINTS[path]:
        body = {k: v for k, v in JSON_ENDPOINTS[path].items() if k != field}
        response = testapp.post_json(path, body, expect_errors=True)
        assert response.status_int == 400, (field, response.text)
        _assert_json_4xx(response)
    assert table_snapshot(db_connection) == before


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_huge_strings_are_refused_without_a_5xx(testapp, db_connection, seeded, path):
    before = table_snapshot(db_connection)
    for field in JSON_ENDPOINTS[path]:
        body = dict(JSON_ENDPOINTS[path], **{field: "a" * 500_000})
        response = testapp.post_json(path, body, expect_errors=True)
        _assert_json_4xx(response)
    assert table_snapshot(db_connection) == before


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_bodies_over_one_megabyte_get_413(testapp, db_connection, seeded, path):
    before = table_snapshot(db_connection)
    huge = json.dumps({"email": "a@b.io", "password": "p" * (1024 * 1024)}).encode()
    response = testapp.post(path, huge, content_type="application/json", expect_errors=True)
    assert response.status_int == 413
    assert response.json == {"error": "request body too large"}
    assert table_snapshot(db_connection) == before


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_a_chunked_body_over_one_megabyte_gets_413(users_app, db_connection, seeded, path):
    before = table_snapshot(db_connection)
    huge = b'{"email": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    request = webob.Request.blank(path, method="POST", content_type="application/json")
    request.body_file = io.BytesIO(huge)
    # No length: the body arrives chunked and only reading it tells its size.
    request.environ.pop("CONTENT_LENGTH", None)
    request.environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    response = request.get_response(SavepointSeam(users_app, db_connection))
    assert response.status_int == 413
    assert response.json == {"error": "request body too large"}
    assert table_snapshot(db_connection) == before


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/xml"]
)
def test_wrong_content_type_gets_415(testapp, db_connection, seeded, path, content_type):
    before = table_snapshot(db_connection)
    body = json.dumps(JSON_ENDPOINTS[path]).encode()
    response = testapp.post(path, body, content_type=content_type, expect_errors=True)
    assert response.status_int == 415
    assert response.json["error"] == "content type must be application/json"
    assert table_snapshot(db_connection) == before


def test_json_with_charset_is_accepted(testapp):
    body = json.dumps({"email": "charset@example.com", "password": "long enough password"}).encode()
    testapp.post("/v1/users/register", body, content_type="application/json; charset=utf-8", status=201)


@pytest.mark.parametrize("path", ["/nope", "/v1/users", "/v1/users/register/extra", "/v1/users/me/"])
def test_unknown_routes_get_a_json_404(testapp, path):
    response = testapp.get(path, status=404)
    assert response.json == {"error": "not found"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/users/register"), ("DELETE", "/v1/users/login"), ("PUT", "/v1/users/me"), ("POST", "/live")],
)
def test_wrong_methods_get_a_json_405_with_allow(testapp, method, path):
    response = testapp.request(path, method=method, status=405)
    assert response.json == {"error": "method not allowed"}
    assert response.headers.get("Allow")


@pytest.mark.parametrize("header", ["Bearer " + "a" * 100_000, "Bearer a.b.c", "Bearer \u00e9", "bearer   "])
def test_odd_authorization_headers_get_401(testapp, header):
    response = testapp.get(
        "/v1/users/me", headers={"Authorization": header.encode("utf-8").decode("latin-1")}, expect_errors=True
    )
    assert response.status_int == 401
    assert response.json["error"] in ("unauthorized", "invalid token")


def test_bad_input_never_touches_a_live_session(testapp, seeded):
    for body in MALFORMED_BODIES.values():
        testapp.post("/v1/users/logout", body, content_type="application/json", expect_errors=True)
    testapp.get("/v1/users/me", headers=bearer(seeded["access_token"]), status=200)
    testapp.post_json("/v1/users/refresh", {"refresh_token": seeded["refresh_token"]}, status=200)
