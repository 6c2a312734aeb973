"""``/ready`` against a real PostgreSQL whose schema moves under a running
app: ready only while the service's migrations are applied (at the code's
head, or past it), so ``migrate reset`` takes it out of rotation instead of
leaving a 200 in front of 500s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import webtest

from goshop_common.db import roles
from goshop_common.db.session import sqlalchemy_url
from goshop_orders import make_app as make_orders_app
from goshop_users import make_app as make_users_app
from goshop_users.migrate import main as migrate_users
from tests.support import create_roles, role_url, with_settings


@pytest.fixture
def users_db(pg_server) -> Iterator[str]:
    """A database of its own, with the users migrations applied: the tests
    reset it, which the session's shared database must never be."""
    url = pg_server.create_database("goshop_ready")
    create_roles(url)  # the migrations grant to them
    assert migrate_users(["--database-url", url, "up"]) == 0
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def users(users_db, settings) -> webtest.TestApp:
    # As users connects: its own role, which may read its version table and no other.
    return webtest.TestApp(make_users_app(with_settings(settings, database_url=role_url(users_db, roles.USERS))))


def migrate(url: str, *argv: str) -> None:
    assert migrate_users(["--database-url", url, *argv]) == 0


def execute(url: str, sql: str) -> None:
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(sql))
    finally:
        engine.dispose()


def test_ready_is_503_after_a_reset_and_200_again_after_up(users, users_db, capsys):
    assert users.get("/ready").json == {"status": "ok"}

    migrate(users_db, "reset")
    assert users.get("/ready", status=503).json == {"error": "db not ready"}
    # What /ready stands in front of: a request that would fail on the missing tables.
    users.post_json("/v1/users/register", {"email": "a@example.com", "password": "long enough"}, status=500)

    migrate(users_db, "up")
    assert users.get("/ready").json == {"status": "ok"}
    users.post_json("/v1/users/register", {"email": "a@example.com", "password": "long enough"}, status=201)


def test_ready_is_503_while_the_schema_is_a_revision_behind_the_code(users, users_db):
    migrate(users_db, "down")
    users.get("/ready", status=503)
    migrate(users_db, "up")
    users.get("/ready", status=200)


def test_ready_is_503_when_the_schema_is_gone_altogether(users, users_db):
    execute(users_db, "DROP SCHEMA users CASCADE")
    assert users.get("/ready", status=503).json == {"error": "db not ready"}


def test_a_schema_past_the_codes_head_is_ready_as_the_previous_release_must_keep_working(users, users_db):
    # A newer release's migration job ran first; this (older) code's pods keep serving.
    execute(users_db, "UPDATE users.alembic_version SET version_num = '20991231235959'")
    users.get("/ready", status=200)


def test_a_service_reads_only_its_own_schemas_version(users_db, settings):
    # Only the users schema is migrated here: the orders service is not ready,
    # whatever the users schema says.
    orders = webtest.TestApp(make_orders_app(with_settings(settings, database_url=role_url(users_db, roles.ORDERS))))
    orders.get("/ready", status=503)
