"""The chaos tier (``make test-chaos``, not part of ``make test``): the shop as
``make run`` starts it, faults injected while a burst of checkouts flows
through its gateway, and what must hold once the last fault is over.

The shop is ``goshop-dev --no-reload`` on a data directory and ports of its
own (``GOSHOP_DEV_DIR``, ``GOSHOP_DEV_PG_PORT``, ``GOSHOP_DEV_KAFKA_PORT``,
``GOSHOP_DEV_BASE_PORT``), plus a second replica of each worker started here
beside it with the very environment ``make run`` gives its own children (read
from one of them). ``make run``'s supervisor restarts its children that die;
this tier does the same for its replicas (``Shop._keep_replicas``).

The load (``Burst``): at least 500 checkouts from 8 client threads, each
thread a customer of its own (registered and logged in through the gateway
before the faults), each checkout with an ``Idempotency-Key`` that a 503 or a
connection error retries as it is until a 201/200 answers. The checkouts are
spread over the fault's span, so orders flow before, during and after it.

After the last fault (``Shop.verify``), within SETTLE_SECONDS: every order
final, in the state its amount implies (``MockProvider``: a multiple of the
fail divisor is cancelled, insufficient_funds; the rest paid); one order per
key; exactly one payment per order (confirmed or failed, matching); every
outbox row published; nothing parked on a dead-letter topic (read from the
broker: a killed consumer loses its counters); and no answer but 201, 200 or
503, and no connection error, during the faults (the gateway is never killed).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from goshop_common.messaging import deadletters
from goshop_devtools.settings import settings_of

# The shop, its replicas and the faults live in a plain module, which
# benchmarks import too (bench/bench_soak.py); these names stay importable
# from here for the tests and helpers that take them from the conftest.
from tests.chaos.harness import (
    CONSUMERS,
    GOSHOP_DEV,
    PORT_OFFSETS,
    SESSION_TIMEOUT_SECONDS,
    WORKERS,
    DevShop,
    Faults,
    Partition,
    Replica,
    Shop,
    environment_of,
    partition_unavailable,
    remove_leftover_partitions,
)

__all__ = [
    "CONSUMERS",
    "PORT_OFFSETS",
    "SESSION_TIMEOUT_SECONDS",
    "WORKERS",
    "DevShop",
    "Faults",
    "Partition",
    "Replica",
    "Shop",
    "environment_of",
]

# Every order final, every outbox row published, this long after the last fault.
SETTLE_SECONDS = 30.0
# An order that took longer than this from placed to final was held up by a
# fault (the saga takes ~50 ms unhindered): the last of them marks the recovery.
HELD_UP = 1.0
CLIENT_THREADS = 8
MIN_ORDERS = 500
# A client's wait for one answer: longer than the gateway's upstream read
# timeout (10 s), so what a client sees is the gateway's answer, not its own give-up.
CLIENT_TIMEOUT = 30.0
RETRY_PAUSE = 0.2
# How long one checkout keeps retrying before the client gives up on it.
CHECKOUT_DEADLINE = 120.0
# Answers a client may get during the faults: created, replayed, unavailable.
EXPECTED_ANSWERS = {200, 201, 503}

_recoveries: list[str] = []


def report(line: str) -> None:
    """A line for the run's summary (pytest_terminal_summary) and the live output."""
    _recoveries.append(line)
    print(f"chaos: {line}", flush=True)


def pytest_terminal_summary(terminalreporter):
    if _recoveries:
        terminalreporter.section("chaos: recovery")
        for line in _recoveries:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def shop(request) -> Iterator[Shop]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the chaos tier reads /proc and signals processes: Linux only")
    if not GOSHOP_DEV.exists():
        pytest.skip(f"no {GOSHOP_DEV}: install goshop into the virtualenv (make venv)")
    # Not under pytest's basetemp: any other pytest run on the machine makes
    # /tmp/pytest-of-<user> private again (0700), and PostgreSQL, which runs
    # as the wheel's system user under root, could no longer reach its data
    # (pg_ctl restart fails with "Permission denied").
    workdir = Path(tempfile.mkdtemp(prefix="goshop-chaos-"))
    shop = Shop(workdir)
    try:
        yield shop.start()
    finally:
        shop.stop()
        if request.session.testsfailed or os.environ.get("GOSHOP_CHAOS_KEEP"):
            print(f"\nchaos: the shop's logs and data are kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def ready_shop(shop) -> Shop:
    """The shared shop with every worker (both replicas) ready, as each test starts."""
    shop.ensure_replicas()
    return shop


# -- the load -------------------------------------------------------------------


@dataclasses.dataclass
class Checkout:
    index: int
    key: str
    amount: int
    order_id: str | None = None
    answers: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Incident:
    """An answer the client should not have had: an unexpected status or a
    connection error (``status`` 0, ``error`` says which)."""

    at: float
    key: str
    status: int
    error: str

    def __str__(self) -> str:
        what = f"HTTP {self.status}" if self.status else "connection error"
        return f"{time.strftime('%H:%M:%S', time.localtime(self.at))} {self.key}: {what} {self.error}"[:300]


def _call(port: int, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
    """One request on a connection of its own: no kept-alive connection the
    server may have closed in between turns into an error of the client's."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
    headers = dict(headers or {})
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        parsed = {"raw": data[:200].decode(errors="replace")}
    return response.status, parsed if isinstance(parsed, dict) else {"body": parsed}


def sign_up(port: int) -> str:
    """A new customer's access token, through the gateway."""
    account = {"email": f"chaos-{uuid.uuid4().hex[:12]}@example.com", "password": "long enough password"}
    status, body = _call(port, "POST", "/v1/users/register", account)
    assert status == 201, (status, body)
    status, body = _call(port, "POST", "/v1/users/login", account)
    assert status == 200, (status, body)
    return body["access_token"]


class Burst:
    """``count`` checkouts from ``threads`` customers through the gateway,
    checkout ``i`` due ``i * seconds / count`` after the start: a steady flow
    over ``seconds`` that a fault cannot stop (a client stuck in retries
    catches up once it gets through). Amounts 10000 + i, so every
    ``fail_divisor``-th order is to be cancelled."""

    def __init__(self, shop: Shop, name: str, count: int, seconds: float, threads: int = CLIENT_THREADS):
        assert count >= MIN_ORDERS
        assert threads >= CLIENT_THREADS
        self.shop = shop
        self.port = shop.base
        self.seconds = seconds
        run = uuid.uuid4().hex[:8]
        self.checkouts = [Checkout(i, f"chaos-{name}-{run}-{i}", 10000 + i) for i in range(count)]
        self.tokens = [sign_up(self.port) for _ in range(threads)]
        self.incidents: list[Incident] = []
        self.gave_up: list[Checkout] = []
        self.crashed: list[str] = []
        self._next = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(token,), name=f"client-{n}", daemon=True)
            for n, token in enumerate(self.tokens)
        ]
        self.started = 0.0
        self.finished = 0.0

    def start(self) -> Burst:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def placed(self) -> int:
        return sum(1 for c in self.checkouts if c.order_id is not None)

    def wait_placed(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` orders are placed: the flow is on."""
        deadline = time.monotonic() + timeout
        while self.placed() < count:
            assert time.monotonic() < deadline, f"only {self.placed()} orders placed in {timeout} s"
            time.sleep(0.05)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"clients still placing orders {timeout} s on: {alive}"
        self.finished = time.monotonic()

    def _take(self) -> Checkout | None:
        with self._lock:
            if self._next >= len(self.checkouts):
                return None
            checkout = self.checkouts[self._next]
            self._next += 1
            return checkout

    def _client(self, token: str) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        interval = self.seconds / len(self.checkouts)
        try:
            while (checkout := self._take()) is not None:
                due = self.started + checkout.index * interval
                time.sleep(max(0.0, due - time.monotonic()))
                self._place(checkout, auth)
        except Exception as exc:  # a bug of the client's own: verify says so
            self.crashed.append(f"{threading.current_thread().name}: {exc.__class__.__name__}: {exc}")
            raise

    def _place(self, checkout: Checkout, auth: dict) -> None:
        headers = {**auth, "Idempotency-Key": checkout.key}
        body = {"amount_cents": checkout.amount, "currency": "RUB"}
        deadline = time.monotonic() + CHECKOUT_DEADLINE
        while time.monotonic() < deadline:
            try:
                status, answer = _call(self.port, "POST", "/v1/checkout", body, headers)
            except (OSError, http.client.HTTPException) as exc:
                checkout.answers.append(0)
                self._incident(checkout, 0, f"{exc.__class__.__name__}: {exc}")
                time.sleep(RETRY_PAUSE)
                continue
            checkout.answers.append(status)
            if status in (200, 201):
                if answer.get("amount_cents") != checkout.amount:
                    self._incident(checkout, status, f"the answer is another order: {json.dumps(answer)}")
                checkout.order_id = answer["id"]
                return
            if status not in EXPECTED_ANSWERS:
                self._incident(checkout, status, json.dumps(answer))
                if status < 500 and status != 409:
                    break  # the request itself is refused: retrying cannot help
            time.sleep(RETRY_PAUSE)
        self.gave_up.append(checkout)

    def _incident(self, checkout: Checkout, status: int, error: str) -> None:
        with self._lock:
            self.incidents.append(Incident(time.time(), checkout.key, status, error))

    def answers(self) -> dict[int, int]:
        counted: dict[int, int] = {}
        for checkout in self.checkouts:
            for status in checkout.answers:
                counted[status] = counted.get(status, 0) + 1
        return counted


@pytest.fixture(scope="session")
def can_partition() -> None:
    reason = partition_unavailable()
    if reason is not None:
        pytest.skip(reason)
    for table in remove_leftover_partitions():
        print(f"chaos: removed the nftables table {table}, left by a run that was killed", flush=True)


# -- after the faults -------------------------------------------------------------


def _wait_settled(shop: Shop, ids: list[uuid.UUID], since: float) -> tuple[dict, bool, bool]:
    """Poll the database until every order in ``ids`` is final and every
    outbox row published, or SETTLE_SECONDS after ``since`` (wall clock)."""
    query = sa.text(
        "SELECT id, user_id, amount_cents, status, reason, created_at, updated_at"
        " FROM orders.orders WHERE id = ANY(:ids)"
    )
    pending = sa.text(
        "SELECT (SELECT count(*) FROM orders.outbox WHERE published_at IS NULL)"
        " + (SELECT count(*) FROM payments.outbox WHERE published_at IS NULL)"
    )
    while True:
        try:
            with shop.engine.connect() as connection:
                rows = {row.id: row for row in connection.execute(query, {"ids": ids})}
                unpublished = connection.execute(pending).scalar_one()
        except sa.exc.OperationalError:
            rows, unpublished = {}, -1
        final = len(rows) == len(ids) and all(row.status != "new" for row in rows.values())
        if (final and unpublished == 0) or time.time() > since + SETTLE_SECONDS:
            return rows, final, unpublished == 0
        time.sleep(0.25)


def _unpublished(shop: Shop) -> list[str]:
    """The outbox rows not published yet, grouped by what they say about themselves."""
    query = sa.text(
        "SELECT schema, event_type, attempts, count(*) AS rows, min(created_at) AS first,"
        " min(next_attempt_at) - now() AS due_in, max(last_error) AS error FROM ("
        "  SELECT 'orders' AS schema, * FROM orders.outbox WHERE published_at IS NULL"
        "  UNION ALL SELECT 'payments', * FROM payments.outbox WHERE published_at IS NULL) AS pending"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    with shop.engine.connect() as connection:
        return [
            f"{r.schema}.outbox {r.event_type}: {r.rows} rows, {r.attempts} attempts, first created {r.first}, "
            f"next attempt in {r.due_in}, last error {r.error!r}"
            for r in connection.execute(query)
        ]


def _saga_state(shop: Shop, ids: list[uuid.UUID]) -> str:
    """Where the burst's orders stand, for a failure's message: which step of
    the saga holds them."""
    try:
        with shop.engine.connect() as connection:
            orders = connection.execute(
                sa.text("SELECT status, count(*) FROM orders.orders WHERE id = ANY(:ids) GROUP BY 1"), {"ids": ids}
            ).all()
            payments = connection.execute(
                sa.text("SELECT status, count(*) FROM payments.payments WHERE order_id = ANY(:ids) GROUP BY 1"),
                {"ids": ids},
            ).all()
            idle = connection.execute(
                sa.text(
                    "SELECT application_name, count(*), max(now() - state_change) FROM pg_stat_activity"
                    " WHERE state = 'idle in transaction' AND now() - state_change > interval '5 seconds'"
                    " GROUP BY 1"
                )
            ).all()
        unpublished = _unpublished(shop)
    except sa.exc.SQLAlchemyError as exc:
        return f"\nthe database could not be read: {exc.__class__.__name__}"
    return (
        f"\norders: {dict(orders)}; payments: {dict(payments)}; "
        f"sessions idle in a transaction for over 5 s: {[tuple(row) for row in idle]}; unpublished outbox rows: "
        + ("none" if not unpublished else "\n  " + "\n  ".join(unpublished))
    )


def verify(shop: Shop, burst: Burst, faults: Faults, name: str) -> None:
    """Everything the tier asserts once the last fault is over (module docstring)."""
    burst.join(timeout=CHECKOUT_DEADLINE + 30)
    evidence = (
        "\nfaults:\n  "
        + "\n  ".join(faults.log)
        + "\nthe replicas' restarts:\n  "
        + ("\n  ".join(shop.restarts) or "none")
        + f"\n{shop.logs()}"
    )
    assert not burst.crashed, f"client threads failed: {burst.crashed}"
    assert not burst.gave_up, (
        f"{len(burst.gave_up)} checkouts never got a 201/200, e.g. {burst.gave_up[0].key}: "
        f"{burst.gave_up[0].answers[-10:]}{evidence}"
    )
    ids = [uuid.UUID(c.order_id) for c in burst.checkouts]
    rows, final, published = _wait_settled(shop, ids, faults.ended)
    evidence = _saga_state(shop, ids) + evidence
    done = time.time()
    not_final = [str(i) for i in ids if i not in rows or rows[i].status == "new"]
    assert final, (
        f"{len(not_final)} of {len(ids)} orders not final {SETTLE_SECONDS:.0f} s after the last fault ended, "
        f"e.g. {not_final[:3]}{evidence}"
    )
    # Recovery: from the end of the last fault until the last order it held
    # up (one that took more than HELD_UP seconds from placed to final) was final.
    held_up = [row for row in rows.values() if (row.updated_at - row.created_at).total_seconds() > HELD_UP]
    recovered = max((row.updated_at.timestamp() for row in held_up), default=faults.ended)
    slowest = max((row.updated_at - row.created_at).total_seconds() for row in rows.values())
    report(
        f"{name}: recovered {max(0.0, recovered - faults.ended):.1f} s after the last fault ended "
        f"({len(held_up)} of {len(ids)} orders held up, the slowest final {slowest:.1f} s after it was placed; "
        f"answers {dict(sorted(burst.answers().items()))}; load {burst.finished - burst.started:.0f} s)"
    )
    assert published, (
        f"outbox rows still unpublished {SETTLE_SECONDS:.0f} s after the last fault:\n  "
        + "\n  ".join(_unpublished(shop))
        + evidence
    )

    by_id = {uuid.UUID(c.order_id): c for c in burst.checkouts}
    assert len(by_id) == len(burst.checkouts), "two keys answered with one order"
    divisor = settings_of(environ=shop.child_env, service="payments-consumer").payments_fail_divisor
    wrong = []
    for order_id, checkout in by_id.items():
        row = rows[order_id]
        expected = ("cancelled", "insufficient_funds") if checkout.amount % divisor == 0 else ("paid", None)
        if (row.status, row.reason) != expected or row.amount_cents != checkout.amount:
            wrong.append(f"{order_id} ({checkout.amount}): {row.status}/{row.reason}, expected {expected}")
    assert not wrong, f"{len(wrong)} orders in the wrong state: {wrong[:5]}{evidence}"

    with shop.engine.connect() as connection:
        users = list({row.user_id for row in rows.values()})
        orders_of_customers = connection.execute(
            sa.text("SELECT count(*) FROM orders.orders WHERE user_id = ANY(:users)"), {"users": users}
        ).scalar_one()
        payments = connection.execute(
            sa.text("SELECT order_id, status FROM payments.payments WHERE order_id = ANY(:ids)"), {"ids": ids}
        ).all()
    assert orders_of_customers == len(ids), f"{orders_of_customers} orders for {len(ids)} checkouts (a retry made two)"
    counted: dict[uuid.UUID, list[str]] = {}
    for payment in payments:
        counted.setdefault(payment.order_id, []).append(payment.status)
    expected_payment = {"paid": ["confirmed"], "cancelled": ["failed"]}
    bad = [
        f"{order_id}: {rows[order_id].status} with payments {counted.get(order_id, [])}"
        for order_id in ids
        if counted.get(order_id, []) != expected_payment[rows[order_id].status]
    ]
    assert not bad, f"{len(bad)} orders without exactly one matching payment: {bad[:5]}{evidence}"

    parked = deadletters.read_parked(shop.bootstrap, timeout=30)
    assert parked == [], f"{len(parked)} events parked: {[p.as_json() for p in parked[:3]]}{evidence}"
    assert shop.parked_counters() == 0, f"a live consumer counts parked events{evidence}"

    assert not burst.incidents, (
        f"{len(burst.incidents)} answers other than 201/200/503 or connection errors during the faults:\n  "
        + "\n  ".join(map(str, burst.incidents[:20]))
        + evidence
    )
    assert done - faults.ended <= SETTLE_SECONDS + 5
