import datetime as dt

import sqlalchemy as sa

from tests.support import PASSWORD, count_rows, register


def test_register_returns_id_normalised_email_and_creation_time(testapp):
    response = testapp.post_json(
        "/v1/users/register", {"email": "  Torvalds@Linux-Foundation.ORG ", "password": PASSWORD}, status=201
    )
    body = response.json
    assert set(body) == {"id", "email", "created_at"}
    assert body["email"] == "torvalds@linux-foundation.org"
    created = dt.datetime.strptime(body["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 60


def test_register_never_returns_or_stores_the_password(testapp, db_connection):
    response = testapp.post_json("/v1/users/register", {"email": "a@example.com", "password": PASSWORD}, status=201)
    assert PASSWORD not in response.text
    stored = db_connection.execute(sa.text("SELECT password_hash FROM users.users")).scalar_one()
    assert PASSWORD not in stored
    assert stored.startswith("$argon2id$")
    assert "m=19456,t=2,p=1" in stored


def test_register_same_email_in_other_case_or_spacing_is_taken(testapp, db_connection):
    register(testapp, "dup@example.com")
    for variant in ("dup@example.com", "DUP@Example.com", "  dup@example.com"):
        response = testapp.post_json("/v1/users/register", {"email": variant, "password": PASSWORD}, status=409)
        assert response.json == {"error": "email already taken"}
    assert count_rows(db_connection, "users.users") == 1


def test_register_rejects_malformed_email(testapp, db_connection):
    # ("" is "email and password are required", as the original answers.)
    for email in ("no-at-sign", "a@", "@b.io", "a b@c.io", "x" * 250 + "@example.com"):
        response = testapp.post_json("/v1/users/register", {"email": email, "password": PASSWORD}, status=400)
        assert response.json["error"] == "invalid email", email
    assert count_rows(db_connection, "users.users") == 0


def test_register_rejects_password_under_eight_characters(testapp, db_connection):
    response = testapp.post_json("/v1/users/register", {"email": "a@example.com", "password": "1234567"}, status=400)
    assert response.json["error"] == "weak password"
    assert count_rows(db_connection, "users.users") == 0
    testapp.post_json("/v1/users/register", {"email": "a@example.com", "password": "12345678"}, status=201)


def test_register_caps_password_length_to_keep_hashing_cheap(testapp, db_connection, settings):
    too_long = "p" * (settings.password_max_length + 1)
    response = testapp.post_json("/v1/users/register", {"email": "a@example.com", "password": too_long}, status=400)
    assert response.json["error"] == "password too long"
    assert count_rows(db_connection, "users.users") == 0


def test_register_reports_the_first_field_error_and_lists_all(testapp):
    response = testapp.post_json("/v1/users/register", {"email": "bad", "password": "x"}, status=400)
    assert response.json["error"] == "invalid email"
    names = {detail["name"] for detail in response.json["details"]}
    assert names == {"email", "password"}
