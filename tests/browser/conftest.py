"""The browser tier: the ops console driven in Debian's chromium by Playwright,
against the shop as ``make run`` starts it (``goshop-dev --no-reload`` on ports
and a data directory of its own: tests/chaos/harness.py's DevShop).

Playwright's own browser download is never run: it drives ``/usr/bin/chromium``
(``GOSHOP_CHROMIUM`` overrides the path), which ``.ci/run`` installs. Without
it these tests skip and say why; under ``CI=true`` they fail instead.

What the run keeps (the timeline's screenshot) is written under
``GOSHOP_TEST_ARTIFACTS`` (default ``.artifacts/`` in the repository) and its
path printed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Http

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _chromium() -> str:
    path = os.environ.get("GOSHOP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        why = f"no chromium at {path}: apt-get install chromium (.ci/run installs it), or set GOSHOP_CHROMIUM"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI must run the browser tier")
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def artifacts() -> Path:
    where = Path(os.environ.get("GOSHOP_TEST_ARTIFACTS") or ROOT / ".artifacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture(scope="session")
def browser():
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class ConsoleShop:
    """make run's shop, and what the browser tests ask of it over its gateway."""

    def __init__(self, dev):
        self.dev = dev

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.dev.base}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.dev.ports['kafka']}"

    def customer(self) -> dict:
        """A registered, logged-in customer: its email and Authorization header."""
        gateway = Http(self.dev.base)
        account = {"email": f"console-{uuid.uuid4().hex[:10]}@example.com", "password": "long enough password"}
        status, _, body = gateway.request("POST", "/v1/users/register", account)
        assert status == 201, body
        status, _, tokens = gateway.request("POST", "/v1/users/login", account)
        assert status == 200, tokens
        return {
            "email": account["email"],
            "access_token": tokens["access_token"],
            "headers": {"Authorization": f"Bearer {tokens['access_token']}"},
        }

    def checkout(self, customer: dict, amount_cents: int) -> str:
        """An order placed through the gateway's checkout; its id."""
        body = {"amount_cents": amount_cents, "currency": "RUB"}
        status, _, order = Http(self.dev.base).request("POST", "/v1/checkout", body, headers=customer["headers"])
        assert status == 201, order
        return order["id"]


@pytest.fixture(scope="module")
def shop() -> Iterator[ConsoleShop]:
    if not sys.platform.startswith("linux"):
        pytest.skip("make run's shop is started and stopped through /proc: Linux only")
    _chromium()  # before minutes of start-up: skip (or fail) at once without a browser
    from goshop_devtools.postgres import free_port
    from tests.chaos.harness import GOSHOP_DEV, DevShop, free_base_for_the_shop

    if not GOSHOP_DEV.exists():
        pytest.skip(f"no {GOSHOP_DEV}: install goshop into the virtualenv (make venv)")
    # Not under pytest's basetemp, as the chaos tier says why: PostgreSQL runs
    # as the wheel's own user and must keep reaching its data.
    workdir = Path(tempfile.mkdtemp(prefix="goshop-browser-"))
    dev = DevShop(workdir, ports={"pg": free_port(), "kafka": free_port(), "base": free_base_for_the_shop(extra=0)})
    try:
        dev.start().wait_until_up()
        yield ConsoleShop(dev)
    finally:
        try:
            if dev.process is not None and dev.process.poll() is None:
                import signal

                dev.signal_and_time(signal.SIGTERM)
        finally:
            dev.kill()
            shutil.rmtree(workdir, ignore_errors=True)
