import datetime as dt
import http.client
import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from goshop_users import make_app
from tests.support import PASSWORD, bearer, connected, count_rows, login, register, served, with_settings


def test_login_returns_bearer_tokens_with_the_configured_access_ttl(testapp):
    user = register(testapp)
    body = login(testapp, user["email"])
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 7200
    assert body["access_token"] != body["refresh_token"]
    assert testapp.get("/v1/users/me", headers=bearer(body["access_token"])).json["uid"] == user["id"]


def test_login_expires_in_follows_the_access_ttl_setting(settings, seam_client):
    app = seam_client(make_app(with_settings(settings, access_ttl=900)))
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


def test_each_login_opens_a_session(testapp, db_connection):
    user = register(testapp)
    for _ in range(3):
        login(testapp, user["email"])
    assert count_rows(db_connection, "users.sessions") == 3


def _fail(app, email, times, address="192.0.2.10", headers=None):
    for _ in range(times):
        app.post_json(
            "/v1/users/login",
            {"email": email, "password": "wrong password"},
            extra_environ={"REMOTE_ADDR": address},
            headers=headers or {},
            status=401,
        )


def _login_status(app, email, password=PASSWORD, address="192.0.2.10"):
    response = app.post_json(
        "/v1/users/login", {"email": email, "password": password}, extra_environ={"REMOTE_ADDR": address}, status="*"
    )
    return response.status_int


def _counters(bind) -> dict[str, int]:
    with connected(bind) as connection:
        return dict(connection.execute(sa.text("SELECT key, failures FROM users.login_failures")).all())


def _app_with(seam_client, settings, **limits):
    return seam_client(make_app(with_settings(settings, **limits)))


def test_failed_logins_per_email_and_client_are_throttled_with_retry_after(testapp, settings):
    user = register(testapp)
    _fail(testapp, user["email"], settings.login_max_failures_per_email_and_client)
    response = testapp.post_json("/v1/users/login", {"email": user["email"], "password": PASSWORD}, status=429)
    assert response.json == {"error": "too many login attempts"}
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= settings.login_failure_window


def test_a_wrong_guess_storm_at_one_email_from_other_clients_does_not_lock_out_its_owner(testapp, settings):
    user = register(testapp)
    limit = settings.login_max_failures_per_email_and_client
    storm_clients = [f"198.51.100.{n}" for n in range(1, 11)]
    assert len(storm_clients) * limit < settings.login_max_failures_per_email
    for address in storm_clients:
        _fail(testapp, user["email"], limit, address=address)
        assert _login_status(testapp, user["email"], "another guess", address=address) == 429
    # Each storm client is stopped; the owner, from a clean client, is not.
    assert _login_status(testapp, user["email"], address="203.0.113.50") == 200


def test_failed_logins_per_client_are_throttled_across_emails(settings, seam_client):
    app = _app_with(seam_client, settings, login_max_failures_per_client=4)
    victim = register(app)
    for n in range(4):
        _fail(app, f"guess-{n}@example.com", 1, address="203.0.113.7")
    assert _login_status(app, victim["email"], address="203.0.113.7") == 429
    # Another client is not affected.
    login(app, victim["email"], extra_environ={"REMOTE_ADDR": "203.0.113.8"})


def test_a_forged_forwarded_for_from_an_untrusted_peer_does_not_escape_the_per_client_limit(settings, seam_client):
    app = _app_with(seam_client, settings, login_max_failures_per_client=4)
    victim = register(app)
    for n in range(4):
        _fail(app, f"guess-{n}@example.com", 1, address="203.0.113.7", headers={"X-Forwarded-For": f"10.9.9.{n}"})
    assert _login_status(app, victim["email"], address="203.0.113.7") == 429


def test_failures_from_many_clients_reach_the_per_email_ceiling_and_throttle_everyone(settings, seam_client):
    app = _app_with(seam_client, settings, login_max_failures_per_email=6)
    user = register(app)
    for n in range(3):
        _fail(app, user["email"], 2, address=f"198.51.100.{n + 1}")
    response = app.post_json(
        "/v1/users/login",
        {"email": user["email"], "password": PASSWORD},
        extra_environ={"REMOTE_ADDR": "203.0.113.50"},
        status=429,
    )
    assert 0 < int(response.headers["Retry-After"]) <= settings.login_failure_window
    # Other emails are untouched by one email's ceiling.
    other = register(app)
    assert _login_status(app, other["email"], address="203.0.113.50") == 200


def test_ipv6_clients_are_counted_per_64(settings, seam_client):
    app = _app_with(seam_client, settings, login_max_failures_per_email_and_client=4)
    user = register(app)
    _fail(app, user["email"], 2, address="2001:db8:0:1::1")
    _fail(app, user["email"], 2, address="2001:db8:0:1::2")
    assert _login_status(app, user["email"], address="2001:db8:0:1:ffff::3") == 429
    assert _login_status(app, user["email"], address="2001:db8:0:2::1") == 200


def test_an_ipv4_mapped_address_counts_as_its_ipv4_address(settings, seam_client):
    app = _app_with(seam_client, settings, login_max_failures_per_email_and_client=2)
    user = register(app)
    _fail(app, user["email"], 1, address="203.0.113.9")
    _fail(app, user["email"], 1, address="::ffff:203.0.113.9")
    assert _login_status(app, user["email"], address="203.0.113.9") == 429


def test_a_refused_attempt_changes_no_counter(testapp, settings, db_connection):
    user = register(testapp)
    _fail(testapp, user["email"], settings.login_max_failures_per_email_and_client)
    before = _counters(db_connection)
    assert before
    for _ in range(3):
        assert _login_status(testapp, user["email"], "wrong password") == 429
    assert _login_status(testapp, user["email"]) == 429
    assert _counters(db_connection) == before


def test_throttle_lifts_when_the_window_has_passed(testapp, settings, db_connection):
    user = register(testapp)
    _fail(testapp, user["email"], settings.login_max_failures_per_email_and_client)
    testapp.post_json("/v1/users/login", {"email": user["email"], "password": PASSWORD}, status=429)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settings.login_failure_window + 1)
    db_connection.execute(sa.text("UPDATE users.login_failures SET window_started_at = :t"), {"t": past})
    login(testapp, user["email"])
    # The expired windows restarted: the pair is forgotten, the others hold nothing.
    assert set(_counters(db_connection).values()) == {0}


def test_successful_login_forgets_the_pair_and_gives_back_its_own_attempt(testapp, settings, db_connection):
    user = register(testapp)
    failures = settings.login_max_failures_per_email_and_client - 1
    _fail(testapp, user["email"], failures)
    login(testapp, user["email"])
    _fail(testapp, user["email"], failures)
    login(testapp, user["email"])
    counters = _counters(db_connection)
    # Only failures count towards the client and the email; the pair is gone.
    assert sorted(counters.values()) == [2 * failures, 2 * failures]
    assert {key.partition(":")[0] for key in counters} == {"client", "email"}


def test_counter_keys_hold_a_digest_of_the_email_never_the_email(testapp, db_connection):
    # 1024 characters of 3-byte UTF-8 that does not compress: as a raw key it
    # would be over PostgreSQL's btree entry limit (2704 bytes).
    rng = random.Random(9)
    email = "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(1000)) + "@example.com"
    response = testapp.post_json("/v1/users/login", {"email": email, "password": "wrong password"}, status=401)
    assert response.json == {"error": "invalid credentials"}
    keys = set(_counters(db_connection))
    assert len(keys) == 3
    assert all(len(key) < 120 and "example.com" not in key for key in keys)


def test_concurrent_wrong_passwords_never_get_more_tries_than_the_limit(users_app, settings, clean_db, engine):
    concurrent = 16
    limit = settings.login_max_failures_per_email_and_client
    body = json.dumps({"email": "target@example.com", "password": "wrong password"}).encode()
    start = threading.Barrier(concurrent)

    def attempt(_):
        connection = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=30)
        try:
            connection.connect()
            start.wait(timeout=30)
            connection.request("POST", "/v1/users/login", body=body, headers={"Content-Type": "application/json"})
            return connection.getresponse().status
        finally:
            connection.close()

    # As many waitress threads as clients, so they really are concurrent in the app.
    with served(users_app, threads=concurrent) as url, ThreadPoolExecutor(concurrent) as pool:
        statuses = sorted(pool.map(attempt, range(concurrent)))
    assert statuses == [401] * limit + [429] * (concurrent - limit)
    assert max(_counters(engine).values()) == limit


@pytest.mark.commits
@pytest.mark.parametrize("right_password", [True, False], ids=["right", "wrong"])
def test_a_login_holds_no_database_connection_while_it_checks_the_password(
    users_app, web_client, monkeypatch, right_password
):
    """argon2's tens of milliseconds run with every connection back in the
    pool: logins arriving together do not each hold one idle."""
    client = web_client(users_app, REMOTE_ADDR="192.0.2.77")
    user = register(client)
    pool = users_app.registry.dbengine.pool
    passwords = users_app.registry.passwords
    verify = passwords.verify
    held: list[int] = []

    def verifying(stored, candidate):
        held.append(pool.checkedout())
        return verify(stored, candidate)

    monkeypatch.setattr(passwords, "verify", verifying)
    password = PASSWORD if right_password else "wrong password"
    client.post_json(
        "/v1/users/login", {"email": user["email"], "password": password}, status=200 if right_password else 401
    )
    assert held == [0]
