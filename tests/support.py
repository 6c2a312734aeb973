"""Helpers the tests share: database servers, snapshots, settings variants."""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid

import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from goshop_common.settings import Settings

USERS_TABLES = ("users.login_failures", "users.sessions", "users.users")
ORDERS_TABLES = ("orders.orders", "orders.idempotency_keys", "orders.outbox", "orders.inbox")
PAYMENTS_TABLES = ("payments.payments", "payments.outbox", "payments.inbox")
ALL_TABLES = USERS_TABLES + ORDERS_TABLES + PAYMENTS_TABLES


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


def migrate_users(url: str) -> None:
    from goshop_users.migrate import main

    assert main(["--database-url", url, "up"]) == 0


def migrate_all(url: str) -> None:
    """Every service's migrations, as make run applies them."""
    from goshop_orders.migrate import main as migrate_orders
    from goshop_payments.migrate import main as migrate_payments

    migrate_users(url)
    assert migrate_orders(["--database-url", url, "up"]) == 0
    assert migrate_payments(["--database-url", url, "up"]) == 0


def with_settings(settings: Settings, **changes) -> Settings:
    return dataclasses.replace(settings, **changes)


def truncate(engine: sa.Engine, tables=ALL_TABLES, attempts: int = 3) -> None:
    # TRUNCATE takes ACCESS EXCLUSIVE on ten tables one by one: a worker of the
    # test before that is still finishing its last transaction can deadlock it.
    # PostgreSQL aborts one side; the test harness tries again.
    for attempt in range(attempts):
        try:
            with engine.begin() as connection:
                connection.execute(sa.text(f"TRUNCATE {', '.join(tables)} CASCADE"))
            return
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "pgcode", None) != "40P01" or attempt == attempts - 1:
                raise
            time.sleep(0.2)


def count_rows(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def table_snapshot(engine: sa.Engine, tables=ALL_TABLES) -> dict[str, list]:
    """Every row of every table, for 'nothing changed' assertions."""
    snapshot = {}
    with engine.connect() as connection:
        for table in tables:
            snapshot[table] = sorted(map(tuple, connection.execute(sa.text(f"SELECT * FROM {table}"))), key=repr)
    return snapshot


PASSWORD = "correct horse battery"


def register(testapp, email: str | None = None, password: str = PASSWORD) -> dict:
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    return testapp.post_json("/v1/users/register", {"email": email, "password": password}, status=201).json


def login(testapp, email: str, password: str = PASSWORD, **kwargs) -> dict:
    return testapp.post_json("/v1/users/login", {"email": email, "password": password}, status=200, **kwargs).json


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
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
