"""The real client address, end to end: users and the gateway as processes,
clients on distinct loopback addresses (127.0.0.2, 127.0.0.3, ...) so that the
gateway's peer, and what it tells users, differ per client.

The gateway (goshop.trusted_proxies = none: the edge) believes only its peer;
users believes X-Forwarded-For only from loopback's 127.0.0.1, where the
gateway connects from.
"""

from __future__ import annotations

import http.client
import json
import os
import uuid

import pytest

from goshop_devtools.postgres import free_port
from tests.e2e.conftest import ROOT, spawn, stop, wait_for
from tests.e2e.stack import SERVE, Stack

PASSWORD = "long enough password"


@pytest.fixture(scope="module")
def shop(settings, tmp_path_factory):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GOSHOP_DATABASE_URL": settings.database_url,
        "GOSHOP_DEV_DIR": settings.dev_dir,
    }
    stack = Stack(env, tmp_path_factory.mktemp("client-address"))
    # Only what a login needs; the gateway's /ready would wait for every
    # upstream, so start() waits on /live.
    try:
        stack.start("users")
        stack.start("gateway")
    except BaseException:
        stack.stop_all()
        raise
    yield stack
    codes = stack.stop_all()
    assert set(codes.values()) == {0}, codes


def post(port: int, source: str, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    """POST from the loopback address ``source``: the peer address the server sees."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        connection.request(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def login(port: int, source: str, email: str, password: str, headers: dict | None = None) -> int:
    return post(port, source, "/v1/users/login", {"email": email, "password": password}, headers)[0]


def sign_up(port: int, source: str) -> str:
    email = f"addr-{uuid.uuid4().hex[:10]}@example.com"
    status, body = post(port, source, "/v1/users/register", {"email": email, "password": PASSWORD})
    assert status == 201, body
    return email


def test_failed_logins_through_the_gateway_throttle_their_client_and_not_another(shop, settings, clean_db):
    gateway = shop.gateway
    victim = sign_up(gateway, "127.0.0.3")
    per_client = settings.login_max_failures_per_client
    # Distinct emails, so that only the per-client limit can stop them.
    statuses = [login(gateway, "127.0.0.2", f"guess-{n}@example.com", "wrong password") for n in range(60)]
    assert statuses == [401] * per_client + [429] * (60 - per_client)
    assert login(gateway, "127.0.0.2", victim, PASSWORD) == 429
    # Before the fix users saw every login come from the gateway: this was 429 too.
    assert login(gateway, "127.0.0.3", victim, PASSWORD) == 200


def test_a_clients_forged_forwarded_for_is_ignored_by_the_gateway(shop, settings, clean_db):
    gateway = shop.gateway
    victim = sign_up(gateway, "127.0.0.5")
    limit = settings.login_max_failures_per_email_and_client
    # The attacker at 127.0.0.4 claims to be the victim's own client, then others.
    for n in range(limit):
        forged = {"X-Forwarded-For": "127.0.0.5" if n % 2 else f"198.51.100.{n}, 127.0.0.5"}
        assert login(gateway, "127.0.0.4", victim, "wrong password", forged) == 401
    # Counted on the attacker's real address, whatever it claims...
    assert login(gateway, "127.0.0.4", victim, PASSWORD, {"X-Forwarded-For": "203.0.113.1"}) == 429
    # ...and not on the address it named.
    assert login(gateway, "127.0.0.5", victim, PASSWORD) == 200


def test_users_believes_forwarded_for_only_from_the_gateway(shop, settings, clean_db):
    users = shop.ports["users"]
    victim = sign_up(users, "127.0.0.7")
    limit = settings.login_max_failures_per_email_and_client
    # Straight to users from 127.0.0.6, which is not a trusted proxy.
    for _ in range(limit):
        assert login(users, "127.0.0.6", victim, "wrong password", {"X-Forwarded-For": "127.0.0.7"}) == 401
    assert login(users, "127.0.0.6", victim, PASSWORD, {"X-Forwarded-For": "203.0.113.2"}) == 429
    assert login(users, "127.0.0.7", victim, PASSWORD) == 200


@pytest.fixture(scope="module")
def gateway_behind_ingress(shop, tmp_path_factory):
    """A second gateway whose GOSHOP_TRUSTED_PROXIES names an ingress at
    127.0.0.8, in front of the same users."""
    port = free_port()
    command = ["-m", SERVE, str(ROOT / "goshop_gateway" / "development.ini"), "--port", str(port)]
    command += ["--metrics-port", str(free_port())]
    env = {**shop.env, "GOSHOP_TRUSTED_PROXIES": "127.0.0.8/32"}
    process = spawn(command, env, tmp_path_factory.mktemp("ingress") / "gateway.log")
    try:
        wait_for(port, "/live", process=process)
        yield port
    finally:
        assert stop(process) == 0


def test_behind_a_trusted_ingress_the_gateway_believes_only_the_ingress(gateway_behind_ingress, settings, clean_db):
    gateway = gateway_behind_ingress
    victim = sign_up(gateway, "127.0.0.8")
    limit = settings.login_max_failures_per_email_and_client
    behind = {"X-Forwarded-For": "203.0.113.77"}
    for _ in range(limit):
        assert login(gateway, "127.0.0.8", victim, "wrong password", behind) == 401
    # The client behind the ingress is throttled...
    assert login(gateway, "127.0.0.8", victim, PASSWORD, behind) == 429
    # ...not the ingress's other clients.
    other = {"X-Forwarded-For": "203.0.113.78"}
    # A peer that is not the ingress cannot speak for them: its guesses are its own.
    for _ in range(limit):
        assert login(gateway, "127.0.0.9", victim, "wrong password", other) == 401
    assert login(gateway, "127.0.0.9", victim, PASSWORD, other) == 429
    assert login(gateway, "127.0.0.8", victim, PASSWORD, other) == 200
