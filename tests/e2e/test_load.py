"""``make load``'s program against the whole shop, each service its own process:
a short load reports every request type and finds the invariants held; an
order that never settles, or a payment gone missing, is caught and fails the
run; a host off loopback is refused before any request."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid

import psycopg2
import pytest

from goshop_devtools.load.invariants import Gateway, check_orders
from goshop_devtools.postgres import free_port
from tests.e2e.conftest import ROOT, Http
from tests.e2e.stack import Stack

REQUEST_TYPES = (
    "POST /v1/users/register",
    "POST /v1/users/login",
    "GET /v1/users/me",
    "POST /v1/checkout",
    "POST /v1/checkout (replay)",
    "GET /v1/orders/{id}/status",
    "POST /v1/users/refresh",
    "POST /v1/users/logout",
)


@pytest.fixture(scope="module")
def stack(settings, service_settings, kafka_broker, tmp_path_factory):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GOSHOP_DATABASE_URL": settings.database_url,
        "GOSHOP_DEV_DIR": settings.dev_dir,
        "GOSHOP_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
    }
    shop = Stack(env, tmp_path_factory.mktemp("stack")).start_all()
    yield shop
    codes = shop.stop_all()
    assert set(codes.values()) == {0}, codes


def load(host: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """``python -m goshop_devtools.load`` as ``make load`` runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSHOP_")}
    return subprocess.run(
        [sys.executable, "-m", "goshop_devtools.load", "--host", host, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_short_load_reports_every_request_type_and_finds_the_invariants_held(stack):
    run = load(f"http://127.0.0.1:{stack.gateway}", "--users", "3", "--spawn-rate", "3", "--time", "6s")
    assert run.returncode == 0, run.stdout + run.stderr
    for name in (*REQUEST_TYPES, "all"):
        # requests, failures (none), req/s, p50 and p99 in ms
        row = re.search(rf"^{re.escape(name)} +(\d+) +0 +[\d.]+ +[\d,]+ +[\d,]+$", run.stdout, re.M)
        assert row, f"no figures for {name}:\n{run.stdout}"
        assert int(row[1]) > 0
    assert re.search(r"throughput [\d.]+ req/s over 6 s; error rate 0\.00% \(0 of \d+\)", run.stdout), run.stdout
    line = re.search(r"^orders: (.*); (\d+) payments", run.stdout, re.M)
    assert line, run.stdout
    states = {state: int(n) for n, state in re.findall(r"(\d+) (\w+)", line[1])}
    # Every order final, each with its one payment.
    assert set(states) <= {"paid", "cancelled"}
    assert sum(states.values()) == int(line[2]) > 0
    assert "invariants held" in run.stdout


def test_orders_that_never_settle_fail_the_run_and_are_named(stack):
    stack.stop("payments-consumer")
    try:
        run = load(f"http://127.0.0.1:{stack.gateway}", "--users", "2", "--time", "5s", "--settle-seconds", "2")
    finally:
        stack.start("payments-consumer")
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(r"every order final: order [0-9a-f-]{36} is still 'new' 2 s after the load", run.stderr)
    assert "invariants held" not in run.stdout


def paid_order(gw: Http) -> tuple[dict, dict]:
    """A new customer's account and one order of theirs, paid."""
    account = {"email": f"load-{uuid.uuid4().hex[:10]}@example.com", "password": "long enough password"}
    assert gw.request("POST", "/v1/users/register", account)[0] == 201
    status, _, tokens = gw.request("POST", "/v1/users/login", account)
    assert status == 200, tokens
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    status, _, order = gw.request("POST", "/v1/checkout", {"amount_cents": 19901, "currency": "RUB"}, headers=auth)
    assert status == 201, order
    deadline = time.monotonic() + 30
    while gw.request("GET", f"/v1/orders/{order['id']}/status", headers=auth)[2]["status"] != "paid":
        assert time.monotonic() < deadline, "the order was not paid within 30 s"
        time.sleep(0.2)
    return account, order


def test_an_order_whose_payment_is_gone_breaks_one_payment_each(stack, settings):
    account, order = paid_order(Http(stack.gateway))
    gateway = Gateway(f"http://127.0.0.1:{stack.gateway}")
    try:
        record = {**account, "orders": [order["id"]], "unconfirmed": 0}
        assert check_orders(gateway, [record], settle_seconds=5).violations == []
        with psycopg2.connect(settings.database_url) as db, db.cursor() as cursor:
            cursor.execute("DELETE FROM payments.payments WHERE order_id = %s", (order["id"],))
        outcome = check_orders(gateway, [record], settle_seconds=5)
    finally:
        gateway.close()
    assert outcome.violations == [f"one payment each: order {order['id']} (paid) has payments [], not one 'confirmed'"]


def test_a_host_off_loopback_is_refused_before_any_request():
    run = load("http://192.0.2.1:8080", timeout=30)
    assert run.returncode == 2
    assert "refusing to load 192.0.2.1" in run.stderr
    assert "load:" not in run.stdout  # never started


def test_no_shop_at_the_host_says_to_start_one():
    run = load(f"http://127.0.0.1:{free_port()}", timeout=30)
    assert run.returncode == 2
    assert "no shop is ready" in run.stderr
    assert "make run" in run.stderr
