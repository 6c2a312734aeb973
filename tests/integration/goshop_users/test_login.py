import datetime as dt

import pytest
import sqlalchemy as sa
import webtest

from goshop_users import make_app
from tests.support import PASSWORD, bearer, count_rows, login, register, with_settings


def test_login_returns_bearer_tokens_with_the_configured_access_ttl(testapp):
    user = register(testapp)
    body = login(testapp, user["email"])
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 7200
    assert body["access_token"] != body["refresh_token"]
    assert testapp.get("/v1/users/me", headers=bearer(body["access_token"])).json["uid"] == user["id"]


def test_login_expires_in_follows_the_access_ttl_setting(settings, clean_db):
    app = webtest.TestApp(make_app(with_settings(settings, access_ttl=900)))
    user = register(app)
    body = login(app, user["email"])
    assert body["expires_in"] == 900
    me = app.get("/v1/users/me", headers=bearer(body["access_token"])).json
    issued = dt.datetime.fromisoformat(me["issued_at"])
    expires = dt.datetime.fromisoformat(me["expires_at"])
    assert (expires - issued).total_seconds() == 900


def test_login_email_is_case_and_space_insensitive(testapp):
    register(testapp, "mixed@example.com")
    login(testapp, "  MIXED@example.COM ")


@pytest.mark.parametrize("email_known", [True, False], ids=["wrong-password", "unknown-email"])
def test_login_failure_is_the_same_answer_whether_or_not_the_email_exists(testapp, email_known):
    register(testapp, "known@example.com")
    email = "known@example.com" if email_known else "nobody@example.com"
    password = "wrong password" if email_known else PASSWORD
    response = testapp.post_json("/v1/users/login", {"email": email, "password": password}, status=401)
    assert response.json == {"error": "invalid credentials"}


def test_each_login_opens_a_session(testapp, engine):
    user = register(testapp)
    for _ in range(3):
        login(testapp, user["email"])
    assert count_rows(engine, "users.sessions") == 3


def _fail(app, email, times, address="192.0.2.10"):
    for _ in range(times):
        app.post_json(
            "/v1/users/login",
            {"email": email, "password": "wrong password"},
            extra_environ={"REMOTE_ADDR": address},
            status=401,
        )


def test_failed_logins_per_email_are_throttled_with_retry_after(testapp, settings):
    user = register(testapp)
    _fail(testapp, user["email"], settings.login_max_failures_per_email)
    response = testapp.post_json("/v1/users/login", {"email": user["email"], "password": PASSWORD}, status=429)
    assert response.json == {"error": "too many login attempts"}
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= settings.login_failure_window


def test_throttled_email_is_refused_from_any_address_even_with_the_right_password(testapp, settings):
    user = register(testapp)
    _fail(testapp, user["email"], settings.login_max_failures_per_email, address="198.51.100.1")
    testapp.post_json(
        "/v1/users/login",
        {"email": user["email"], "password": PASSWORD},
        extra_environ={"REMOTE_ADDR": "198.51.100.2"},
        status=429,
    )


def test_failed_logins_per_address_are_throttled_across_emails(settings, clean_db):
    app = webtest.TestApp(make_app(with_settings(settings, login_max_failures_per_ip=4)))
    victim = register(app)
    for n in range(4):
        _fail(app, f"guess-{n}@example.com", 1, address="203.0.113.7")
    app.post_json(
        "/v1/users/login",
        {"email": victim["email"], "password": PASSWORD},
        extra_environ={"REMOTE_ADDR": "203.0.113.7"},
        status=429,
    )
    # Another address is not affected.
    login(app, victim["email"], extra_environ={"REMOTE_ADDR": "203.0.113.8"})


def test_throttle_lifts_when_the_window_has_passed(testapp, settings, engine):
    user = register(testapp)
    _fail(testapp, user["email"], settings.login_max_failures_per_email)
    testapp.post_json("/v1/users/login", {"email": user["email"], "password": PASSWORD}, status=429)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settings.login_failure_window + 1)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE users.login_failures SET window_started_at = :t"), {"t": past})
    login(testapp, user["email"])


def test_successful_login_forgets_the_emails_failures(testapp, settings, engine):
    user = register(testapp)
    _fail(testapp, user["email"], settings.login_max_failures_per_email - 1)
    login(testapp, user["email"])
    _fail(testapp, user["email"], settings.login_max_failures_per_email - 1)
    login(testapp, user["email"])
    with engine.connect() as connection:
        keys = set(connection.execute(sa.text("SELECT key FROM users.login_failures")).scalars())
    assert keys == {"ip:192.0.2.10"}
