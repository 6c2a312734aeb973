"""The images as Kubernetes runs them: every process the manifests start (the
five servers, the outboxer, both consumers, the maintenance worker, the three migrate Jobs), each from
its image with the manifest's own command, in production mode (the image's
production.ini, ``GOSHOP_ENV=production``, a mounted signing key, secrets from
the environment), as uid 10001 on a read-only root filesystem, against the
embedded PostgreSQL and broker on the host network. A checkout through the
containerised gateway ends ``paid``, and every container stops on SIGTERM.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from goshop_devtools.postgres import free_port
from tests.containers.conftest import ROOT
from tests.e2e.conftest import Http, wait_for
from tests.production import checkout, production_database, production_env
from tests.support import write_signing_key

pytestmark = pytest.mark.slow

KEY_IN_CONTAINER = "/run/secrets/goshop/jwt-signing-key.pem"
# Deployment (or Job) name -> the production_env entry it is given.
SERVERS = {"users": "users", "orders": "orders", "payments": "payments", "opsassistant": "ops", "gateway": "gateway"}
WORKERS = {
    "outboxer": "outboxer",
    "orders-consumer": "orders-consumer",
    "payments-consumer": "payments-consumer",
    "maintenance": "maintenance",
}
# The roles first (as the administrator), then the migrations, which grant to them.
JOBS = ("db-roles", "users-migrate", "orders-migrate", "payments-migrate")
UID = "10001"


def manifest_container(name: str) -> tuple[str, list[str]]:
    """The image and command of the one container the manifest for ``name``
    runs (k8s/<name>-deployment.yaml, or k8s/<name>-job.yaml for a Job)."""
    path = ROOT / "k8s" / (f"{name}-job.yaml" if name in JOBS else f"{name}-deployment.yaml")
    (workload,) = [o for o in yaml.safe_load_all(path.read_text()) if o and o["kind"] in ("Deployment", "Job")]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return f"{container['image'].rsplit(':', 1)[0]}:dev", [*container["command"], *container.get("args", [])]


class ShopInContainers:
    def __init__(self, containers, database_urls: dict[str, str], bootstrap: str, secrets_dir: Path):
        self.containers = containers
        self.ops_token = secrets.token_urlsafe(32)
        key = write_signing_key(secrets_dir / "jwt-signing-key.pem")
        # Read by uid 10001 inside, as its owner: production refuses a key
        # file its group or others can read. The directory stays the test's own.
        os.chown(key, int(UID), int(UID))
        self.volumes = {str(key): KEY_IN_CONTAINER}
        self.ports = {env: free_port() for env in SERVERS.values()}
        self.env = production_env(
            ports=self.ports,
            database_urls=database_urls,
            bootstrap=bootstrap,
            key_file=KEY_IN_CONTAINER,
            ops_token=self.ops_token,
        )
        self.running = {}
        self.worker_ports = {}
        self.migrations = {}

    def migrate(self) -> None:
        for job in JOBS:
            image, command = manifest_container(job)
            env = self.env["db-roles" if job == "db-roles" else "migrate"]
            result = self.containers.run(image, command, env, name=job, detach=False)
            self.migrations[job] = result

    def start(self) -> None:
        # The manifest's command, moved to free loopback ports (the host
        # network is shared with whatever else runs here): serve and the
        # workers take the last --host/--port given.
        for name, env in SERVERS.items():
            image, command = manifest_container(name)
            command += ["--host", "127.0.0.1", "--port", str(self.ports[env]), "--metrics-port", str(free_port())]
            self.running[name] = self.containers.run(
                image, command, self.env[env], name=name, volumes=self.volumes if env == "users" else None
            )
        for name, env in WORKERS.items():
            image, command = manifest_container(name)
            self.worker_ports[name] = free_port()
            command += ["--host", "127.0.0.1", "--port", str(self.worker_ports[name])]
            self.running[name] = self.containers.run(image, command, self.env[env], name=name)
        ready = {**{n: self.ports[e] for n, e in SERVERS.items()}, **self.worker_ports}
        for name, port in ready.items():
            try:
                wait_for(port, "/ready", timeout=90)
            except AssertionError:
                raise AssertionError(f"{name} not ready: {self.running[name].state()}\n{self.logs()}") from None

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{container.logs()}" for name, container in self.running.items())


@pytest.fixture(scope="module")
def database_urls() -> Iterator[dict[str, str]]:
    with production_database() as urls:
        yield urls


@pytest.fixture(scope="module")
def shop(containers, database_urls, kafka_broker, tmp_path_factory):
    shop = ShopInContainers(containers, database_urls, kafka_broker.bootstrap, tmp_path_factory.mktemp("secrets"))
    shop.migrate()
    assert all(result.returncode == 0 for result in shop.migrations.values()), {
        job: result.stderr[-2000:] for job, result in shop.migrations.items()
    }
    shop.start()
    return shop


def test_the_migrate_jobs_apply_every_schema_from_their_images(shop):
    for job, result in shop.migrations.items():
        assert result.returncode == 0, (job, result.stderr)
    # Run again, as a re-applied Job would: nothing to do, still success.
    shop.migrate()
    assert {job: result.returncode for job, result in shop.migrations.items()} == dict.fromkeys(JOBS, 0)


def test_every_process_runs_as_uid_10001(shop):
    for name, container in shop.running.items():
        status = container.exec("cat", "/proc/1/status")
        assert status.returncode == 0, (name, status.stderr)
        uids = next(line.split()[1:] for line in status.stdout.splitlines() if line.startswith("Uid:"))
        assert set(uids) == {UID}, f"{name}: PID 1 runs as {uids}"


def test_the_root_filesystem_is_read_only_as_in_kubernetes(shop):
    result = shop.running["users"].exec("sh", "-c", "touch /app/written")
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr


def test_a_checkout_through_the_containerised_gateway_is_paid(shop):
    gateway = Http(shop.ports["gateway"])
    final = checkout(gateway, logs=shop.logs)
    assert final["status"] == "paid"
    _, _, jwks = gateway.request("GET", "/.well-known/jwks.json")
    assert not any(key["kid"].startswith("dev-") for key in jwks["keys"]), "users signs with a generated key"
    ops = {"Authorization": f"Bearer {shop.ops_token}"}
    status, _, _ = gateway.request("GET", f"/v1/ops/orders/{final['id']}/timeline", headers=ops)
    assert status == 200


def test_every_container_stops_on_sigterm_with_exit_0_within_10_s(shop):
    # Last in the module: it stops the shop.
    with ThreadPoolExecutor(len(shop.running)) as pool:
        took = dict(zip(shop.running, pool.map(lambda c: c.stop(grace=10), shop.running.values()), strict=True))
    states = {name: container.state() for name, container in shop.running.items()}
    print("\nstop on SIGTERM:", {name: f"{seconds:.1f}s" for name, seconds in took.items()})
    assert {name: state["exit_code"] for name, state in states.items()} == dict.fromkeys(shop.running, 0), states
    slow = {name: seconds for name, seconds in took.items() if seconds >= 10}
    assert not slow, f"killed after the grace period: {slow}"
