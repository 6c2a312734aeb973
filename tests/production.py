"""The production profile, shared by the tests that start the shop as it is
deployed (processes from their production.ini, or the images): its secrets,
made here and never in the repository; what each process is given; and a
checkout driven through the gateway."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from goshop_common.db import roles
from goshop_devtools.postgres import EmbeddedPostgres, free_port
from goshop_devtools.settings import SPECS
from tests.saga_runtime import wait_until
from tests.support import PASSWORD, create_roles, process_urls

HTTP_SERVICES = ("users", "orders", "payments", "ops", "gateway")
WORKERS = ("outboxer", "orders-consumer", "payments-consumer", "maintenance")


@contextlib.contextmanager
def production_database() -> Iterator[dict[str, str]]:
    """A PostgreSQL server of its own whose database roles
    (goshop_common.db.roles) have passwords made now: production refuses
    the repository's, and roles are the server's, so the other tests' roles
    (with the development password) cannot share one. Yields each process's
    GOSHOP_DATABASE_URL by process name, ``db-roles`` (the administrator's)
    and ``migrate`` included; the roles are made."""
    scratch = Path(tempfile.mkdtemp(prefix="goshop-prod-pg-"))
    server = EmbeddedPostgres(scratch / "data", free_port(), password=secrets.token_urlsafe(24), durable=False)
    server.start()
    try:
        passwords = {role: secrets.token_urlsafe(24) for role in roles.PASSWORD_SETTINGS}
        create_roles(server.url, passwords)
        yield {"db-roles": server.url, **process_urls(server.url, passwords)}
    finally:
        server.destroy()
        shutil.rmtree(scratch, ignore_errors=True)


def production_env(
    *, ports: dict[str, int], database_urls: dict[str, str], bootstrap: str, key_file: str, ops_token: str
) -> dict[str, dict[str, str]]:
    """What each process is given, and nothing more (docs/operations.md, "Keys and
    secrets"): a process that asked for another's secret would not start.
    ``ports`` are the HTTP services' public ports on 127.0.0.1; ``key_file`` is
    the signing key's path as users sees it. Keys: the services, the workers
    and ``migrate``. ``database_urls``: each one's (production_database)."""
    suffix = uuid.uuid4().hex[:8]
    production = {"GOSHOP_ENV": "production"}
    users = f"http://127.0.0.1:{ports['users']}"
    jwks = {"GOSHOP_JWKS_URL": f"{users}/.well-known/jwks.json"}

    def database(process: str) -> dict[str, str]:
        return {"GOSHOP_DATABASE_URL": database_urls[process]}

    broker = {"GOSHOP_KAFKA_BOOTSTRAP": bootstrap}
    return {
        "users": {**production, **database("users"), "GOSHOP_JWT_PRIVATE_KEY_FILE": key_file},
        "orders": {**production, **database("orders"), **jwks},
        "payments": {**production, **database("payments"), **jwks},
        "ops": {**production, **database("ops"), **broker, "GOSHOP_OPS_TOKEN": ops_token},
        "gateway": {
            **production,
            **jwks,
            "GOSHOP_PUBLIC_URL": f"http://127.0.0.1:{ports['gateway']}",
            "GOSHOP_USERS_URL": users,
            "GOSHOP_ORDERS_URL": f"http://127.0.0.1:{ports['orders']}",
            "GOSHOP_PAYMENTS_URL": f"http://127.0.0.1:{ports['payments']}",
            "GOSHOP_OPS_URL": f"http://127.0.0.1:{ports['ops']}",
        },
        "migrate": {**production, **database("migrate")},
        # The roles bootstrap: the administrator's URL and every role's password.
        "db-roles": {**production, **database("db-roles"), **role_passwords(database_urls)},
        "maintenance": {**production, **database("maintenance")},
        "outboxer": {**production, **database("outboxer"), **broker, "GOSHOP_OUTBOX_POLL_SECONDS": "1"},
        # Groups of their own: the broker is shared with other tests.
        "orders-consumer": {
            **production,
            **database("orders-consumer"),
            **broker,
            "GOSHOP_ORDERS_CONSUMER_GROUP": f"prod-o-{suffix}",
        },
        "payments-consumer": {
            **production,
            **database("payments-consumer"),
            **broker,
            "GOSHOP_PAYMENTS_CONSUMER_GROUP": f"prod-p-{suffix}",
        },
    }


def role_passwords(database_urls: dict[str, str]) -> dict[str, str]:
    """GOSHOP_DB_*_PASSWORD, as the processes' URLs carry them."""
    env_of = {spec.name: spec.env for spec in SPECS}
    return {
        env_of[setting]: make_url(database_urls[process]).password
        for process, role in roles.PROCESS_ROLES.items()
        for owner, setting in roles.PASSWORD_SETTINGS.items()
        if owner == role
    }


def checkout(gateway, amount_cents: int = 4321, timeout: float = 60, logs=None) -> dict:
    """A new customer registers, logs in and checks out through ``gateway``
    (a tests.e2e.conftest.Http); returns the order's settled status with the
    customer's headers, or raises AssertionError if it never settles, with
    ``logs()`` (the shop's logs) appended when given."""
    try:
        return _checkout(gateway, amount_cents, timeout)
    except AssertionError as exc:
        if logs is None:
            raise
        raise AssertionError(f"{exc}\n{logs()}") from None


def _checkout(gateway, amount_cents: int, timeout: float) -> dict:
    email = f"prod-{uuid.uuid4().hex[:8]}@example.com"
    status, _, body = gateway.request("POST", "/v1/users/register", {"email": email, "password": PASSWORD})
    assert status == 201, body
    status, _, tokens = gateway.request("POST", "/v1/users/login", {"email": email, "password": PASSWORD})
    assert status == 200, tokens
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    status, _, order = gateway.request(
        "POST", "/v1/checkout", {"amount_cents": amount_cents}, headers={**auth, "Idempotency-Key": uuid.uuid4().hex}
    )
    assert status == 201, order

    def settled():
        _, _, body = gateway.request("GET", f"/v1/orders/{order['id']}/status", headers=auth)
        return body if body["status"] != "new" else None

    final = wait_until(settled, timeout=timeout, message=f"order {order['id']} settled")
    return {**final, "headers": auth}
