"""End-to-end fixtures: real processes, real sockets."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Http:
    """A tiny JSON client over http.client: what a curl user sees."""

    def __init__(self, port: int):
        self.port = port

    def request(self, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = dict(headers or {})
        payload = raw
        if body is not None:
            payload = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.msg, json.loads(data) if data else None
        finally:
            connection.close()


def wait_for(port: int, path: str = "/ready", timeout: float = 60, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}")
        try:
            status, _, _ = Http(port).request("GET", path)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"127.0.0.1:{port}{path} not ready after {timeout}s")


def stop(process: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 20) -> int:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def spawn(args: list[str], env: dict, log_path: Path, append: bool = False) -> subprocess.Popen:
    log = log_path.open("ab" if append else "wb")
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


@pytest.fixture
def child_env(settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSHOP_")}
    env.update({"GOSHOP_DATABASE_URL": settings.database_url, "GOSHOP_DEV_DIR": settings.dev_dir})
    return env


@pytest.fixture
def worker_env(child_env, kafka_broker, service_settings):
    """What a worker process needs: the database, the broker, users' public
    key, a quick outbox poll, and consumer groups of the test's own."""
    return {
        **child_env,
        **kafka_broker.client_env,
        "GOSHOP_JWT_PUBLIC_KEY_FILE": service_settings.jwt_public_key_file,
        "GOSHOP_OUTBOX_POLL_SECONDS": "1",
        # Groups of each test's own (see tests/saga_runtime.py).
        "GOSHOP_ORDERS_CONSUMER_GROUP": f"test-orders-{uuid.uuid4().hex[:8]}",
        "GOSHOP_PAYMENTS_CONSUMER_GROUP": f"test-payments-{uuid.uuid4().hex[:8]}",
    }


@pytest.fixture(scope="module")
def stack(settings, service_settings, kafka_broker, tmp_path_factory):
    """The whole shop as separate processes on free ports (tests.e2e.stack),
    one per test module that asks for it."""
    from tests.e2e.stack import Stack  # it imports this module's helpers

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GOSHOP_DATABASE_URL": settings.database_url,
        "GOSHOP_DEV_DIR": settings.dev_dir,
        **kafka_broker.client_env,
    }
    shop = Stack(env, tmp_path_factory.mktemp("stack")).start_all()
    yield shop
    codes = shop.stop_all()
    assert set(codes.values()) == {0}, codes
