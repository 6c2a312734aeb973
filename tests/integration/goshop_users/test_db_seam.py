"""The environ seam lets a test hand the app its own, uncommitted session.

The WebTest clients (``testapp``, ``orders_client``, ``seam_client(app)``)
use it on the test's connection: each request's work is a savepoint that
pyramid_tm releases or rolls back as it would commit or abort the request's
transaction, and the test's rollback undoes all of it."""

import uuid

import pytest
import sqlalchemy as sa
import transaction
import webtest

from goshop_common.db.session import SESSION_ENVIRON_KEY
from goshop_common.web.app import make_service_app
from goshop_common.web.errors import ApiError
from goshop_users.models import User
from tests.support import PASSWORD, count_rows, login, register


def test_an_injected_session_is_the_one_the_request_uses(users_app, dbsession, engine):
    passwords = users_app.registry.passwords
    dbsession.add(User(email="seam@example.com", password_hash=passwords.hash(PASSWORD)))
    dbsession.flush()
    app = webtest.TestApp(
        users_app,
        extra_environ={
            SESSION_ENVIRON_KEY: dbsession,
            "tm.active": True,
            "tm.manager": transaction.TransactionManager(),
        },
    )
    # The user exists only in the test's open transaction, yet the app logs in as them.
    app.post_json("/v1/users/login", {"email": "seam@example.com", "password": PASSWORD}, status=200)
    assert count_rows(engine, "users.users") == 0


def _write_then(request):
    """Inserts a user on request.dbsession, then answers as ``?then=`` says."""
    email = request.params["email"]
    request.dbsession.execute(sa.insert(User.__table__).values(email=email, password_hash="x"))
    then = request.params.get("then")
    if then == "raise":
        raise ApiError(409, "changed my mind")
    if then == "crash":
        raise RuntimeError("a bug after the write")
    return {"written": email}


def _probe_views(config):
    config.add_route("write_then", "/write-then")
    config.add_view(_write_then, route_name="write_then", renderer="json", request_method="POST")


@pytest.fixture(scope="module")
def probe_app(settings):
    """A goshop service (pyramid_tm, the error views, the session) whose one
    view writes, then returns or raises."""
    app = make_service_app(settings, None, service="seam-probe", views=None, includes=(_probe_views,))
    yield app
    app.registry.dbengine.dispose()


def _users_named(db_connection, email):
    return db_connection.execute(sa.select(sa.func.count()).where(User.__table__.c.email == email)).scalar_one()


def test_a_request_that_returns_is_seen_by_the_test_and_the_next_request_but_never_committed(
    probe_app, seam_client, db_connection, engine
):
    client = seam_client(probe_app)
    email = f"kept-{uuid.uuid4().hex[:8]}@example.com"
    client.post(f"/write-then?email={email}", status=200)
    assert _users_named(db_connection, email) == 1
    # The next request sees it too: the unique email is taken now.
    response = client.post(f"/write-then?email={email}", expect_errors=True)
    assert response.status_int == 500
    assert _users_named(db_connection, email) == 1
    with engine.connect() as other:
        assert _users_named(other, email) == 0


@pytest.mark.parametrize(("then", "status"), [("raise", 409), ("crash", 500)])
def test_a_request_that_raises_after_writing_leaves_nothing_behind(probe_app, seam_client, db_connection, then, status):
    client = seam_client(probe_app)
    kept = f"kept-{uuid.uuid4().hex[:8]}@example.com"
    client.post(f"/write-then?email={kept}", status=200)
    dropped = f"dropped-{uuid.uuid4().hex[:8]}@example.com"
    client.post(f"/write-then?email={dropped}&then={then}", status=status)
    # Only the failed request's savepoint was rolled back: the earlier one stands.
    assert _users_named(db_connection, dropped) == 0
    assert _users_named(db_connection, kept) == 1


def test_the_users_app_through_the_seam_commits_nothing(testapp, db_connection, engine):
    user = register(testapp)
    login(testapp, user["email"])
    assert count_rows(db_connection, "users.users") == 1
    assert count_rows(db_connection, "users.sessions") == 1
    for table in ("users.users", "users.sessions", "users.login_failures"):
        assert count_rows(engine, table) == 0, table


def test_a_failed_logins_reservation_outlives_the_requests_rollback_but_not_the_tests(testapp, db_connection, engine):
    user = register(testapp)
    testapp.post_json("/v1/users/login", {"email": user["email"], "password": "wrong password"}, status=401)
    # The throttle's own transaction ran on the test's connection: the 401
    # rolled back the request's savepoint, not the reservation.
    assert count_rows(db_connection, "users.login_failures") == 3
    assert count_rows(engine, "users.login_failures") == 0
