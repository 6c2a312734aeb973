"""The whole shop as separate processes on free ports, for tests that drive it
only through the gateway and stop or freeze single services."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

from goshop_devtools.postgres import free_port
from tests.e2e.conftest import ROOT, spawn, stop, wait_for
from tests.support import process_urls

SERVE = "goshop_common.web.serve"


def _ini(service: str) -> str:
    return str(ROOT / f"goshop_{service}" / "development.ini")


class Stack:
    def __init__(self, env: dict, log_dir: Path):
        self.log_dir = log_dir
        self.ports = {name: free_port() for name in ("gateway", "users", "orders", "payments", "outboxer", "ops")}
        # Each HTTP service's internal app (/metrics, detailed health): free
        # ports too, as the inis' 908x may be a running shop's.
        self.metrics_ports = {name: free_port() for name in ("gateway", "users", "orders", "payments", "ops")}
        self.env = {
            # Coverage's subprocess measurement rides this environment
            # (.coveragerc: patch = subprocess); the rest of ours stays out.
            **{name: value for name, value in os.environ.items() if name.startswith("COVERAGE_")},
            **env,
            "GOSHOP_JWKS_URL": f"http://127.0.0.1:{self.ports['users']}/.well-known/jwks.json",
            "GOSHOP_PUBLIC_URL": f"http://127.0.0.1:{self.ports['gateway']}",
            "GOSHOP_USERS_URL": f"http://127.0.0.1:{self.ports['users']}",
            "GOSHOP_ORDERS_URL": f"http://127.0.0.1:{self.ports['orders']}",
            "GOSHOP_PAYMENTS_URL": f"http://127.0.0.1:{self.ports['payments']}",
            "GOSHOP_OPS_URL": f"http://127.0.0.1:{self.ports['ops']}",
            "GOSHOP_UPSTREAM_READ_TIMEOUT_SECONDS": "2",
            "GOSHOP_OUTBOX_POLL_SECONDS": "1",
            "GOSHOP_ORDERS_CONSUMER_GROUP": f"test-orders-{uuid.uuid4().hex[:8]}",
            "GOSHOP_PAYMENTS_CONSUMER_GROUP": f"test-payments-{uuid.uuid4().hex[:8]}",
        }
        self.commands = {
            "users": self._serve("users"),
            "orders": self._serve("orders"),
            "payments": self._serve("payments"),
            "outboxer": ["-m", "goshop_outboxer", "--port", str(self.ports["outboxer"])],
            # Free ports for their health and metrics: :8086/:8087 may be a
            # running shop's.
            "orders-consumer": ["-m", "goshop_orders.consumer", "--port", str(free_port())],
            "payments-consumer": ["-m", "goshop_payments.consumer", "--port", str(free_port())],
            "ops": self._serve("ops"),
            "gateway": self._serve("gateway"),
        }
        # Each process connects as its own database role (goshop_common.db.roles),
        # as make run and the manifests have it; the gateway to no database.
        database_urls = process_urls(self.env.pop("GOSHOP_DATABASE_URL"))
        self.process_env = {
            name: {"GOSHOP_DATABASE_URL": database_urls[name]} for name in self.commands if name in database_urls
        }
        self.processes: dict[str, subprocess.Popen] = {}

    def _serve(self, name: str) -> list[str]:
        ports = ["--port", str(self.ports[name]), "--metrics-port", str(self.metrics_ports[name])]
        return ["-m", SERVE, _ini(name), *ports]

    @property
    def gateway(self) -> int:
        return self.ports["gateway"]

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def start(self, name: str) -> None:
        # Append, so a restarted service's earlier log is kept.
        with (self.log_dir / f"{name}.log").open("ab"):
            pass
        env = {**self.env, **self.process_env.get(name, {})}
        self.processes[name] = spawn(self.commands[name], env, self.log_dir / f"{name}.log", append=True)
        if name in self.ports:
            wait_for(self.ports[name], "/live", process=self.processes[name])

    def start_all(self) -> Stack:
        for name in self.commands:
            self.start(name)
        wait_for(self.gateway, "/ready", timeout=60)
        return self

    def stop(self, name: str) -> int:
        return stop(self.processes.pop(name))

    def freeze(self, name: str) -> None:
        os.killpg(self.processes[name].pid, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        os.killpg(self.processes[name].pid, signal.SIGCONT)

    def stop_all(self) -> dict[str, int]:
        return {name: self.stop(name) for name in list(self.processes)}
