"""Helpers the tests share: database servers, snapshots, settings variants."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
import uuid

import jwt
import psycopg2
import sqlalchemy as sa
import sqlalchemy.orm
import transaction
import zope.sqlalchemy
from sqlalchemy.engine import make_url
from zope.sqlalchemy.datamanager import STATUS_CHANGED

from goshop_common.db import roles
from goshop_common.db.session import SESSION_ENVIRON_KEY, make_engine
from goshop_common.settings import DEV_DATABASE_PASSWORD
from goshop_devtools.settings import AllSettings

# What the migrations made: every table of every schema that keeps an Alembic
# version table (each service migrates a schema of its own), but that one.
SERVICE_TABLES = sa.text(
    "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
    " WHERE tablename <> 'alembic_version'"
    " AND schemaname IN (SELECT schemaname FROM pg_tables WHERE tablename = 'alembic_version')"
    " ORDER BY 1"
)

# A TRUNCATE that waits longer than this for a lock is waiting on a transaction
# that will not end: say so rather than hang the run.
TRUNCATE_LOCK_TIMEOUT = "15s"


class Server:
    """A PostgreSQL server on which tests create and drop databases."""

    def __init__(self, url: str):
        self.url = url

    def url_for(self, database: str) -> str:
        return make_url(self.url).set(database=database).render_as_string(hide_password=False)

    def _admin(self):
        url = make_url(self.url)
        connection = psycopg2.connect(
            host=url.host, port=url.port, user=url.username, password=url.password, dbname=url.database
        )
        connection.autocommit = True
        return connection

    def create_database(self, prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        admin = self._admin()
        try:
            with admin.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            admin.close()
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        admin = self._admin()
        try:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.close()


def create_roles(admin_url: str, passwords: dict[str, str] | None = None) -> None:
    """The database roles (goshop_common.db.roles) with the development
    password unless ``passwords`` says otherwise, as make run makes them."""
    passwords = passwords or {}
    roles.bootstrap(admin_url, {role: passwords.get(role, DEV_DATABASE_PASSWORD) for role in roles.PASSWORD_SETTINGS})


def role_url(url: str, role: str, password: str = DEV_DATABASE_PASSWORD) -> str:
    """``url``'s database as ``role``."""
    return roles.url_as(url, role, password)


def process_urls(url: str, passwords: dict[str, str] | None = None) -> dict[str, str]:
    """Each process's GOSHOP_DATABASE_URL on ``url``'s database: its own role's."""
    passwords = passwords or {}
    return {
        process: role_url(url, role, passwords.get(role, DEV_DATABASE_PASSWORD))
        for process, role in roles.PROCESS_ROLES.items()
    }


def migrate_users(url: str) -> None:
    """The users migrations, by an administrator of ``url``'s server (the
    roles made first, as make run does)."""
    from goshop_users.migrate import main

    create_roles(url)
    assert main(["--database-url", url, "up"]) == 0


def migrate_all(url: str) -> None:
    """Every service's migrations, as make run applies them."""
    from goshop_orders.migrate import main as migrate_orders
    from goshop_payments.migrate import main as migrate_payments

    migrate_users(url)
    assert migrate_orders(["--database-url", url, "up"]) == 0
    assert migrate_payments(["--database-url", url, "up"]) == 0


def with_settings(settings: AllSettings, **changes) -> AllSettings:
    return dataclasses.replace(settings, **changes)


def service_tables(bind) -> list[str]:
    """Every table the services' migrations made, schema-qualified, from the catalog."""
    with connected(bind) as connection:
        return list(connection.execute(SERVICE_TABLES).scalars())


def truncate(engine: sa.Engine, attempts: int = 3) -> None:
    """Empty every table the migrations made (their version tables aside): for
    tests whose writes are committed by servers, workers or threads of their own."""
    # TRUNCATE takes ACCESS EXCLUSIVE on the tables one by one: a worker of the
    # test before that is still finishing its last transaction can deadlock it.
    # PostgreSQL aborts one side; the test harness tries again.
    tables = service_tables(engine)
    assert tables, "no tables: were the migrations applied?"
    for attempt in range(attempts):
        try:
            with engine.begin() as connection:
                connection.execute(sa.text(f"SET LOCAL lock_timeout = '{TRUNCATE_LOCK_TIMEOUT}'"))
                connection.execute(sa.text(f"TRUNCATE {', '.join(tables)} CASCADE"))
            return
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "pgcode", None) != "40P01" or attempt == attempts - 1:
                raise
            time.sleep(0.2)


@contextlib.contextmanager
def connected(bind):
    """``bind`` as a Connection: a test's own connection as it is, so that it
    sees the test's uncommitted work; an Engine's for the block, which sees
    only what was committed."""
    if isinstance(bind, sa.Connection):
        yield bind
        return
    with bind.connect() as connection:
        yield connection


def count_rows(bind, table: str) -> int:
    """Rows in ``table`` as ``bind`` sees them: pass the test's connection
    (``db_connection``) when the app under test worked through the seam."""
    with connected(bind) as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def plan_nodes(connection: sa.Connection, query: sa.Select, *, analyze: bool = False) -> list[dict]:
    """Every node of ``query``'s plan on ``connection`` (EXPLAIN, FORMAT JSON;
    ``analyze``: run it too, for the actual row counts)."""
    compiled = query.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    [[plan]] = connection.exec_driver_sql(f"EXPLAIN ({options}) {compiled}", compiled.params).all()
    nodes, todo = [], [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", ()))
    return nodes


def table_snapshot(bind, tables=None) -> dict[str, list]:
    """Every row of every table (by default every table the migrations made),
    for 'nothing changed' assertions."""
    snapshot = {}
    with connected(bind) as connection:
        for table in tables or service_tables(connection):
            snapshot[table] = sorted(map(tuple, connection.execute(sa.text(f"SELECT * FROM {table}"))), key=repr)
    return snapshot


class SavepointSeam:
    """``app`` with every request's database work on ``connection``, the test's
    own, which is never committed (its outer transaction is rolled back at the
    end of the test).

    Each request gets what production gives it, only on that connection: a
    session of its own, handed in through the seam
    (``environ["goshop.dbsession"]``), whose transaction is a savepoint, joined
    to a transaction manager of the request's own (``environ["tm.manager"]``)
    that pyramid_tm runs as usual. A request that pyramid_tm commits releases
    its savepoint, so the test and the next request see its work; one it
    aborts (the view raised) rolls its savepoint back, and its work is gone
    as it would be in production. Work done outside the request's session —
    the login throttle's reservations — runs on the same connection in
    savepoints of its own (goshop_common.db.session.request_bind), as is the
    order POST's own transaction.

    What one transaction cannot give: PostgreSQL's now() is the start of the
    test's transaction for every request, and a transaction-scoped advisory
    lock is held until the test ends. Tests that compare now()-stamped rows
    with the services' clock commit instead (marked ``commits``)."""

    def __init__(self, app, connection: sa.Connection):
        self.app = app
        self.connection = connection

    def __getattr__(self, name):
        # app.registry and the like, as on the app itself.
        return getattr(self.app, name)

    def __call__(self, environ, start_response):
        session = sa.orm.Session(bind=self.connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
        manager = transaction.TransactionManager(explicit=True)
        # As goshop_common.db.session registers a request's own session.
        zope.sqlalchemy.register(session, transaction_manager=manager, initial_state=STATUS_CHANGED)
        environ[SESSION_ENVIRON_KEY] = session
        environ["tm.manager"] = manager
        try:
            return self.app(environ, start_response)
        finally:
            session.close()


PASSWORD = "correct horse battery"


def register(testapp, email: str | None = None, password: str = PASSWORD) -> dict:
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    return testapp.post_json("/v1/users/register", {"email": email, "password": password}, status=201).json


def login(testapp, email: str, password: str = PASSWORD, **kwargs) -> dict:
    return testapp.post_json("/v1/users/login", {"email": email, "password": password}, status=200, **kwargs).json


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expired_copy(access_token: str, signing_key) -> str:
    """``access_token`` as users would have signed it an hour past its expiry:
    the same claims, good signature and key id, but ``exp`` gone by (well
    beyond the verifier's leeway)."""
    claims = jwt.decode(access_token, options={"verify_signature": False})
    now = dt.datetime.now(dt.UTC)
    expired = {**claims, "iat": now - dt.timedelta(hours=3), "exp": now - dt.timedelta(hours=1)}
    return jwt.encode(
        expired, signing_key.private_key, algorithm=signing_key.algorithm, headers={"kid": signing_key.kid}
    )


# What a 401's WWW-Authenticate says (goshop_common.auth.tokens), spelled out:
# a change to them is a change to the API.
NO_TOKEN = "Bearer"
EXPIRED = 'Bearer error="invalid_token", error_description="the access token expired"'
INVALID = 'Bearer error="invalid_token", error_description="the access token is invalid"'
SESSION_ENDED = 'Bearer error="invalid_token", error_description="the session of the access token has ended"'


def listed(testapp, tokens) -> list[dict]:
    """The sessions ``tokens``' owner sees (GET /v1/users/sessions)."""
    return testapp.get("/v1/users/sessions", headers=bearer(tokens["access_token"]), status=200).json["sessions"]


def refreshes(testapp, tokens) -> int:
    """The status a refresh with ``tokens``' refresh token gets."""
    return testapp.post_json(
        "/v1/users/refresh", {"refresh_token": tokens["refresh_token"]}, expect_errors=True
    ).status_code


def new_customer(testapp) -> dict:
    user = register(testapp)
    tokens = login(testapp, user["email"])
    return {**user, "headers": bearer(tokens["access_token"]), "tokens": tokens}


@contextlib.contextmanager
def served(app, threads: int = 2):
    """A WSGI app on 127.0.0.1 behind waitress in a background thread; yields its URL."""
    import threading

    import waitress
    from waitress import wasyncore

    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, name="test-waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # Closed from inside the server's own loop, so its select() never sees
        # a socket closed under it; the loop ends when its map is empty.
        try:
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        except OSError:
            # Once in CI (the ops-through-gateway test's teardown) the trigger's
            # pipe was already closed (EBADF): something in this process closed
            # a descriptor it did not own. Not found yet; the server is closed
            # from here instead, and the join below still asserts it ended.
            wasyncore.close_all(server._map)
        thread.join(timeout=5)
        server.task_dispatcher.shutdown()
        assert not thread.is_alive()


def write_signing_key(path):
    """A fresh Ed25519 signing key in PEM, as production's key file holds it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return path


class CannedServer:
    """A stdlib HTTP server on 127.0.0.1 answering every GET with
    ``answer(path) -> (status, body)``: a stand-in for an upstream that the
    test steers. ``close()`` stops it."""

    def __init__(self, answer):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                status, body = answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@contextlib.contextmanager
def scratch_schema(settings: AllSettings, metadata: sa.MetaData):
    """An engine on a schema of the test's own (``metadata.schema``) holding
    ``metadata``'s tables, dropped afterwards: for consumers whose inbox and
    effects are no service's."""
    engine = make_engine(settings)
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {metadata.schema} CASCADE"))
        connection.execute(sa.text(f"CREATE SCHEMA {metadata.schema}"))
        metadata.create_all(connection)
    try:
        yield engine
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {metadata.schema} CASCADE"))
        engine.dispose()


def bench_module(name: str):
    """A script of bench/ (no package: its scripts import each other as
    siblings, with bench/ on sys.path) imported as a module, once."""
    import importlib.util
    import sys
    from pathlib import Path

    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
