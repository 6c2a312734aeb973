"""The production profile, shared by the tests that start the shop as it is
deployed (processes from their production.ini, or the images): its secrets,
made here and never in the repository; what each process is given; and a
checkout driven through the gateway."""

from __future__ import annotations

import secrets
import uuid

import psycopg2
from sqlalchemy.engine import make_url

from tests.saga_runtime import wait_until
from tests.support import PASSWORD

HTTP_SERVICES = ("users", "orders", "payments", "ops", "gateway")
WORKERS = ("outboxer", "orders-consumer", "payments-consumer", "maintenance")


def own_database(pg_server) -> str:
    """A database owned by a role with a password made now: production
    refuses the repository's password."""
    role, password = f"shop_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24)
    url = make_url(pg_server.url)
    admin = psycopg2.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname=url.database
    )
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (password,))
            cursor.execute(f'CREATE DATABASE "{role}" OWNER {role}')
    finally:
        admin.close()
    return url.set(username=role, password=password, database=role).render_as_string(hide_password=False)


def production_env(
    *, ports: dict[str, int], database_url: str, bootstrap: str, key_file: str, ops_token: str
) -> dict[str, dict[str, str]]:
    """What each process is given, and nothing more (README, "Keys and
    secrets"): a process that asked for another's secret would not start.
    ``ports`` are the HTTP services' public ports on 127.0.0.1; ``key_file`` is
    the signing key's path as users sees it. Keys: the services, the workers
    and ``migrate``."""
    suffix = uuid.uuid4().hex[:8]
    production = {"GOSHOP_ENV": "production"}
    users = f"http://127.0.0.1:{ports['users']}"
    jwks = {"GOSHOP_JWKS_URL": f"{users}/.well-known/jwks.json"}
    database = {"GOSHOP_DATABASE_URL": database_url}
    broker = {"GOSHOP_KAFKA_BOOTSTRAP": bootstrap}
    return {
        "users": {**production, **database, "GOSHOP_JWT_PRIVATE_KEY_FILE": key_file},
        "orders": {**production, **database, **jwks},
        "payments": {**production, **database, **jwks},
        "ops": {**production, **database, **broker, "GOSHOP_OPS_TOKEN": ops_token},
        "gateway": {
            **production,
            **jwks,
            "GOSHOP_PUBLIC_URL": f"http://127.0.0.1:{ports['gateway']}",
            "GOSHOP_USERS_URL": users,
            "GOSHOP_ORDERS_URL": f"http://127.0.0.1:{ports['orders']}",
            "GOSHOP_PAYMENTS_URL": f"http://127.0.0.1:{ports['payments']}",
            "GOSHOP_OPS_URL": f"http://127.0.0.1:{ports['ops']}",
        },
        "migrate": {**production, **database},
        "maintenance": {**production, **database},
        "outboxer": {**production, **database, **broker, "GOSHOP_OUTBOX_POLL_SECONDS": "1"},
        # Groups of their own: the broker is shared with other tests.
        "orders-consumer": {**production, **database, **broker, "GOSHOP_ORDERS_CONSUMER_GROUP": f"prod-o-{suffix}"},
        "payments-consumer": {
            **production,
            **database,
            **broker,
            "GOSHOP_PAYMENTS_CONSUMER_GROUP": f"prod-p-{suffix}",
        },
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
