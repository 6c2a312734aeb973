"""``make load``'s program against the whole shop, each service its own process:
a short load reports every request type and finds the invariants held; an
order that never settles, or a payment gone missing, is caught and fails the
run; a host off loopback is refused before any request."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2

from goshop_devtools.lifeline import command_line
from goshop_devtools.load.__main__ import LOCUSTFILE
from goshop_devtools.load.invariants import Gateway, check_orders
from goshop_devtools.postgres import free_port
from goshop_devtools.waiting import poll_until
from tests.e2e.conftest import ROOT, Http

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


def command(host: str, *args: str) -> dict:
    """``python -m goshop_devtools.load`` as ``make load`` runs it, as Popen's arguments."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSHOP_")}
    argv = [sys.executable, "-m", "goshop_devtools.load", "--host", host, *args]
    return {"args": argv, "cwd": ROOT, "env": env, "text": True}


def load(host: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(**command(host, *args), capture_output=True, timeout=timeout, check=False)


def children(pid: int) -> list[int]:
    return [int(kid) for kid in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


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


def test_a_timed_out_order_holds_only_with_a_payment_that_kept_no_money(stack, settings):
    account, order = paid_order(Http(stack.gateway))
    gateway = Gateway(f"http://127.0.0.1:{stack.gateway}")
    record = {**account, "orders": [order["id"]], "unconfirmed": 0}

    def make(payment_status):
        with psycopg2.connect(settings.database_url) as db, db.cursor() as cursor:
            cursor.execute(
                "UPDATE orders.orders SET status = 'cancelled', reason = 'payment_timeout' WHERE id = %s",
                (order["id"],),
            )
            cursor.execute(
                "UPDATE payments.payments SET status = %s WHERE order_id = %s", (payment_status, order["id"])
            )
        return check_orders(gateway, [record], settle_seconds=5).violations

    try:
        assert make("refunded") == []
        assert make("voided") == []
        kept = make("confirmed")
    finally:
        gateway.close()
    assert kept == [
        f"one payment each: order {order['id']} (cancelled) has payments ['confirmed'], "
        "not one 'refunded' or 'voided' or 'failed'"
    ]


def test_a_5xx_during_the_load_fails_the_run(stack):
    # Stopped once the load runs: a shop that is not ready is refused at the start.
    driver = subprocess.Popen(
        **command(f"http://127.0.0.1:{stack.gateway}", "--users", "2", "--time", "7s", "--settle-seconds", "5"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert driver.stdout.readline().startswith("load: 2 customers")
        time.sleep(1.5)
        stack.stop("orders")
        time.sleep(2)
        stack.start("orders")
        out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        if "orders" not in stack.processes:
            stack.start("orders")
    assert driver.returncode == 1, out + err
    assert re.search(r"no 5xx: the shop answered \d+ x 502", err), err
    # Locust's figures count them as failures too.
    assert re.search(r"^all +\d+ +[1-9]\d* ", out, re.M), out


def test_the_checker_names_what_it_cannot_account_for(stack):
    account, order = paid_order(Http(stack.gateway))
    stranger = {"email": f"load-{uuid.uuid4().hex[:10]}@example.com", "password": "never registered"}
    missing = str(uuid.uuid4())
    gateway = Gateway(f"http://127.0.0.1:{stack.gateway}")
    try:
        outcome = check_orders(
            gateway,
            [{**stranger, "orders": [], "unconfirmed": 0}, {**account, "orders": [missing], "unconfirmed": 0}],
            settle_seconds=5,
        )
        assert outcome.violations == [
            f"check: could not log in as {stranger['email']} (HTTP 401)",
            f"orders: {account['email']} does not see its orders ['{missing}']",
            f"one order per checkout: {account['email']} has 1 order(s) the load did not place "
            "and only 0 checkout(s) went unanswered",
        ]
        placed = [{**account, "orders": [order["id"]], "unconfirmed": 0}]
        for service, violation in [
            ("payments", f"check: GET /v1/payments for {order['id']} answered 502"),
            ("orders", f"check: GET /v1/orders as {account['email']} answered 502"),
        ]:
            stack.stop(service)
            try:
                outcome = check_orders(gateway, placed, settle_seconds=1)
            finally:
                stack.start(service)
            assert outcome.violations == [violation]
    finally:
        gateway.close()


def test_a_gateway_that_does_not_answer_is_status_0():
    gateway = Gateway(f"http://127.0.0.1:{free_port()}")
    try:
        assert gateway.call("GET", "/ready") == (0, {})
    finally:
        gateway.close()


def test_sigterm_stops_locust_and_checks_nothing(stack):
    driver = subprocess.Popen(
        **command(f"http://127.0.0.1:{stack.gateway}", "--users", "2", "--time", "60s"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert driver.stdout.readline().startswith("load: 2 customers")
        # Started (forked, then exec'd) just after that line.
        [locust] = poll_until(
            lambda: [kid for kid in children(driver.pid) if str(LOCUSTFILE) in (command_line(kid) or "")], timeout=10
        )
        time.sleep(1)
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 130
    assert "interrupted (SIGTERM): Locust stopped, no invariant checked" in err
    assert "checking" not in out
    # Gone, or a zombie (an empty command line) until its parent's parent reaps it.
    assert not command_line(locust)


def test_a_failing_locust_is_reported_with_its_own_words(stack):
    # Locust reads LOCUST_* variables for options the driver does not give.
    host = f"http://127.0.0.1:{stack.gateway}"
    run = subprocess.run(
        **{**command(host, "--time", "5s"), "env": {**command(host)["env"], "LOCUST_PROCESSES": "lots"}},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "make load: Locust failed (exit 2):" in run.stderr
    assert "argument --processes: invalid int value: 'lots'" in run.stderr


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
