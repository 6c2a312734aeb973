"""The shop in production mode, as it is deployed: every process started from
its ``production.ini`` (workers from the environment) under waitress, with
``GOSHOP_ENV=production``, a signing key file and secrets made here, outside
the repository. Each process gets only the secrets it needs, so a process that
asked for another's would not start. Two replicas each of the outboxer, both
consumers and the maintenance worker run side by side.
"""

from __future__ import annotations

import http.client
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from goshop_common.db import roles
from goshop_devtools.postgres import free_port
from tests.e2e.conftest import ROOT, Http, spawn, stop, wait_for
from tests.production import HTTP_SERVICES, checkout, production_database, production_env
from tests.support import write_signing_key

pytestmark = pytest.mark.slow

SERVE = "goshop_common.web.serve"
WORKER_MODULES = {
    "outboxer": "goshop_outboxer",
    "orders-consumer": "goshop_orders.consumer",
    "payments-consumer": "goshop_payments.consumer",
    "maintenance": "goshop_maintenance",
}
REPLICAS = 2


class ProductionShop:
    def __init__(self, database_urls: dict[str, str], bootstrap: str, log_dir: Path):
        self.log_dir = log_dir
        self.ops_token = secrets.token_urlsafe(32)
        self.ports = {name: free_port() for name in HTTP_SERVICES}
        self.metrics_ports = {name: free_port() for name in HTTP_SERVICES}
        self.worker_ports: dict[str, int] = {}
        # The machine's environment without any goshop setting: only what each
        # process is given reaches it.
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GOSHOP_", "OLLAMA_"))}
        given = production_env(
            ports=self.ports,
            database_urls=database_urls,
            bootstrap=bootstrap,
            key_file=str(write_signing_key(log_dir / "jwt-signing-key.pem")),
            ops_token=self.ops_token,
        )
        self.env = {name: {**base, **env} for name, env in given.items()}
        self.processes: dict[str, subprocess.Popen] = {}

    def migrate(self) -> None:
        # The roles bootstrap from the command line, in production mode (the
        # harness made the roles already: a second run changes nothing).
        _run_module("goshop_common.db.roles", env=self.env["db-roles"])
        for service in ("users", "orders", "payments"):
            _run_module(f"goshop_{service}.migrate", "up", env=self.env["migrate"])

    def start(self) -> None:
        for name in HTTP_SERVICES:
            ini = str(ROOT / f"goshop_{name}" / "production.ini")
            args = ["-m", SERVE, ini, "--host", "127.0.0.1", "--port", str(self.ports[name])]
            args += ["--metrics-port", str(self.metrics_ports[name])]
            self.processes[name] = spawn(args, self.env[name], self.log_dir / f"{name}.log")
        for name, module in WORKER_MODULES.items():
            for replica in range(REPLICAS):
                port = self.worker_ports[f"{name}-{replica}"] = free_port()
                args = ["-m", module, "--port", str(port)]
                process = spawn(args, self.env[name], self.log_dir / f"{name}-{replica}.log")
                self.processes[f"{name}-{replica}"] = process
        for name in HTTP_SERVICES:
            wait_for(self.ports[name], "/ready", timeout=90, process=self.processes[name])
        for name, port in self.worker_ports.items():
            wait_for(port, "/ready", timeout=90, process=self.processes[name])

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )

    def stop_all(self) -> dict[str, int]:
        return {name: stop(process) for name, process in self.processes.items()}


@pytest.fixture(scope="module")
def database_urls() -> Iterator[dict[str, str]]:
    with production_database() as urls:
        yield urls


@pytest.fixture(scope="module")
def shop(database_urls, kafka_broker, tmp_path_factory):
    # One shop for the module: starting thirteen processes is the slow part.
    shop = ProductionShop(database_urls, kafka_broker.bootstrap, tmp_path_factory.mktemp("production"))
    shop.migrate()
    try:
        shop.start()
    except AssertionError:
        shop.stop_all()
        raise AssertionError(f"the production shop did not start:\n{shop.logs()}") from None
    yield shop
    codes = shop.stop_all()
    assert set(codes.values()) == {0}, codes


def test_a_checkout_through_the_gateway_is_paid_in_production_mode(shop):
    gateway = Http(shop.ports["gateway"])
    final = checkout(gateway, logs=shop.logs)
    assert final["status"] == "paid"
    status, _, payments = gateway.request("GET", f"/v1/payments?order_id={final['id']}", headers=final["headers"])
    assert status == 200
    assert [p["status"] for p in payments["payments"]] == ["confirmed"]

    # The operator sees the saga with the token made for this deployment only.
    ops = {"Authorization": f"Bearer {shop.ops_token}"}
    status, _, timeline = gateway.request("GET", f"/v1/ops/orders/{final['id']}/timeline", headers=ops)
    assert status == 200, timeline
    # The users key is the mounted one, not a generated development key.
    _, _, jwks = gateway.request("GET", "/.well-known/jwks.json")
    assert not any(key["kid"].startswith("dev-") for key in jwks["keys"])


def test_the_ops_console_is_off_in_production_until_its_origin_is_set(shop):
    # ops.production.ini sets no GOSHOP_OPS_CONSOLE_ORIGIN: its pages answer, through
    # the gateway, that the console is off, and even the right token signs no one in.
    for method, path, body in (
        ("GET", "/ops/", None),
        ("GET", "/ops/signin", None),
        ("POST", "/ops/signin", f"token={shop.ops_token}"),
    ):
        connection = http.client.HTTPConnection("127.0.0.1", shop.ports["gateway"], timeout=10)
        try:
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
        finally:
            connection.close()
        assert response.status == 404, (method, path, response.status)
        assert "The ops console is off here." in text
        assert "frame-ancestors 'none'" in response.getheader("Content-Security-Policy")
        assert response.getheader("Set-Cookie") is None


def test_health_and_metrics_answer_in_production_mode(shop):
    for name in HTTP_SERVICES:
        status, headers, body = Http(shop.ports[name]).request("GET", "/ready")
        assert (status, body["status"]) == (200, "ok"), name
        assert headers["Cache-Control"] == "no-store"
        status, _, _ = Http(shop.ports[name]).request("GET", "/metrics")
        assert status == 404, f"{name} serves /metrics on its public port"
    for name, port in {**shop.metrics_ports, **shop.worker_ports}.items():
        text = _get_text(port, "/metrics")
        assert "goshop_" in text, name
    assert "goshop_http_requests_total" in _get_text(shop.metrics_ports["gateway"], "/metrics")


def test_each_process_connects_as_its_own_role(shop, database_urls):
    admin = psycopg2.connect(database_urls["db-roles"])
    try:
        with admin.cursor() as cursor:
            # The processes' pools name themselves "goshop" (goshop_common.db.session).
            cursor.execute("SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = 'goshop'")
            assert {row[0] for row in cursor.fetchall()} == set(roles.RUNTIME)
    finally:
        admin.close()


@pytest.mark.parametrize("as_whom", ["db-roles", "migrate"])
def test_production_refuses_to_start_as_a_superuser_or_the_owner(shop, database_urls, as_whom):
    env = {**shop.env["orders"], "GOSHOP_DATABASE_URL": database_urls[as_whom]}
    ini = str(ROOT / "goshop_orders" / "production.ini")
    args = [sys.executable, "-m", SERVE, ini, "--host", "127.0.0.1", "--port", str(free_port())]
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    what = "a superuser" if as_whom == "db-roles" else "the owner of a schema or table"
    assert what in result.stderr, result.stderr[-2000:]
    # The password stays out of the message.
    assert database_urls[as_whom].split(":")[2].split("@")[0] not in result.stderr


def _get_text(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200, (port, path, response.status)
        return response.read().decode()
    finally:
        connection.close()


def _run_module(module: str, *args: str, env: dict[str, str]) -> None:
    """``python -m module args`` as a production process would run it; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
