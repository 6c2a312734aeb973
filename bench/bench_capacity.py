"""The limit of two cores: the highest checkout rate through the gateway
that the shop sustains, with one and with two replicas of each worker.

    .venv/bin/python bench/bench_capacity.py            # ~1-1.5 h: both layouts, 5 min holds
    .venv/bin/python bench/bench_capacity.py --quick    # ~10 min smoke run: short steps, 30 s holds
    .venv/bin/python bench/bench_capacity.py --replicas 2 --hold 120

For each layout (``--replicas 1``: the shop as ``make run`` starts it;
``--replicas 2``: plus a second replica of every worker make run runs, as the
chaos tier starts them, ``tests.chaos.harness.Replica``) the bench starts a
fresh shop (``bench_shop.start_shop``), registers and logs in ``customers``
customers through the gateway, and then:

1. The Cornice floor (``bench_shop``'s, a process of its own): ``wrk -t2
   -c16`` for a few seconds, its req/s, latency and CPU per request; again
   after the hold, and the figures compared are the mean of the two.
2. The search. Open loop: checkouts are due at a fixed rate (one every
   1/rate s, whatever the answers do) and sent by a pool of keep-alive
   connections to ``POST /v1/checkout``, each as the next customer in turn
   with an Idempotency-Key of its own; one in ten is an amount the mock
   provider refuses (its order is cancelled). A checkout's clock starts when
   it is due, not when a connection is free, so queueing anywhere (in the
   client pool, in waitress, in the saga) is in the figures. Each step runs
   for ``step`` seconds, then waits for the saga to settle every order it
   placed. The rate goes up by half until a rate fails (two steps in a row at
   it: a neighbour on a shared machine can sink one), then is bisected
   between the highest pass and the lowest failure to ``precision``.
3. The holds: the highest passing rate for ``hold`` seconds (300 by
   default) on a fresh shop; if it fails, half of it, then bisected between
   the highest rate held and the lowest failed to ``precision``, each hold
   on another fresh shop, MAX_HOLDS at most (next_hold). Fresh, because make run's broker (Tansu,
   ``memory://``) keeps every record it was sent and serves each fetch at a
   cost that grows with them: after the search's orders, it is not the
   broker a sustained rate should be judged on (docs/performance.md).
4. A profile: ``py-spy record --gil`` on the busiest Python process of the
   shop for a short run at the held rate (not judged; skipped without
   py-spy on PATH or in the venv).

A step passes when every invariant held:

* every checkout answered 201 (no 5xx, no 4xx, no connection error), at the
  rate asked (the generator sent at least 97 % of it: otherwise the load
  generator, not the shop, is what the figure would measure);
* every order final (paid or cancelled) within SETTLE_SECONDS of the last
  checkout, in the state its amount implies, and with exactly one payment,
  ``confirmed`` for a paid order and ``failed`` for a cancelled one
  (``goshop_devtools.load.invariants.FINAL``; a payment-timeout
  cancellation with a payment that took no money);
* p99 of checkout due -> order final under 1 s. Final is the order's
  ``updated_at``, stamped by the orders consumer in the transaction that
  settles it; due is the wall clock of the same machine. No client polls;
  ``created_at - due`` (the HTTP path) and ``updated_at - created_at`` (the
  saga) are shown apart;
* the outbox backlog (orders.outbox and payments.outbox rows not yet
  published, sampled every second) not growing: its least-squares slope
  over the step adds up to less than one second's worth of checkouts.

CPU per order: utime+stime of every shop process, the replicas, the broker
and every PostgreSQL process (backends credited to the shop process on the
other end of their connection), from the start of a step to the moment its
last order is final (``bench_shop.Meter``), over the orders the step placed;
against the Cornice floor's CPU per request measured in the same run. The
load generator runs in this script, on the same two cores: its CPU is shown
apart and is not in the shop's.

What bounds it is shown for the hold and for the first failed step: the
cores each process used (a Python process near 1.0 is bound by its GIL), the
machine's idle share, the saga's in-flight orders, the outbox backlog, and
what the PostgreSQL backends were waiting on (``pg_stat_activity``
sampled every second: ``Lock`` is a row or table lock, ``LWLock`` and
``IO`` the server's own, ``CPU`` running).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import http.client
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(ROOT))

import _harness as h  # noqa: E402
import bench_shop as sb  # noqa: E402

from goshop_devtools import lifeline  # noqa: E402
from goshop_devtools.load.invariants import FINAL, TIMED_OUT, TIMED_OUT_PAYMENTS  # noqa: E402
from goshop_devtools.postgres import free_port  # noqa: E402
from goshop_devtools.run import PROCESSES  # noqa: E402
from tests.chaos.harness import Replica, environment_of  # noqa: E402

SCRATCH_PREFIX = "goshop-bench-capacity-"
# Every worker make run runs (no HTTP app): each gets a second replica in the two-replica layout.
WORKERS = {process.name: process.module for process in PROCESSES if not process.serves_an_app}
PAID_BODY = sb.ORDER_BODY  # confirmed by the mock provider
REFUSED_BODY = {"amount_cents": 19900, "currency": "RUB"}  # a multiple of its fail divisor: cancelled
REFUSED_EVERY = 10
P99_LIMIT = 1.0
SETTLE_SECONDS = 30.0
CLIENT_TIMEOUT = 30.0
MAX_CONNECTIONS = 64
RATE_SHORTFALL = 0.97
LOGIN_THREADS = 4
SAMPLE_SECONDS = 1.0
# A rate that passes 20-s steps can fail 5 minutes by a quarter, or, with two
# replicas of each worker, by more than half (the broker above: 168.8/s passed
# the steps, 70/s held): a failed hold halves the rate, then the holds bisect.
MAX_HOLDS = 6


def next_hold(held: float | None, failed: float | None, precision: float) -> float | None:
    """The next rate to hold, given the highest rate held so far and the
    lowest that failed (None: none yet); None when there is nothing left
    to try: a rate held and nothing failed above it, or the two within
    ``precision`` of the one held."""
    if failed is None:
        return None
    if held is None:
        return round(failed / 2, 1)
    if (failed - held) / held <= precision:
        return None
    return round((held + failed) / 2, 1)


@dataclasses.dataclass(frozen=True)
class Settings:
    step_seconds: float
    hold_seconds: float
    start_rate: float
    precision: float  # the search stops when (lowest failure - highest pass) / highest pass is below this
    max_steps: int
    customers: int
    floor_seconds: int
    profile_seconds: int


FULL = Settings(
    step_seconds=20, hold_seconds=300, start_rate=20, precision=0.1, max_steps=12, customers=100, floor_seconds=5,
    profile_seconds=20,
)  # fmt: skip
QUICK = Settings(
    step_seconds=8, hold_seconds=30, start_rate=20, precision=0.25, max_steps=8, customers=20, floor_seconds=2,
    profile_seconds=8,
)  # fmt: skip


# --- replicas -------------------------------------------------------------------


class TetheredReplica(Replica):
    """The chaos tier's second replica of a worker, under a lifeline to this
    script: killed with it, even by SIGKILL, as make run's own processes are."""

    def command(self) -> list[str]:
        return lifeline.command(os.getpid(), self.module, ["--port", str(self.port)])


def start_replicas(shop: sb.Shop, scratch: Path) -> list[TetheredReplica]:
    """A second replica of each worker, with the environment make run gives
    the first (its own database role among it), ready before this returns."""
    pids = shop.service_pids()
    replicas = []
    for name, module in WORKERS.items():
        replica = TetheredReplica(f"{name}-2", module, free_port(), scratch / f"{name}-2.log")
        replicas.append(replica.start(environment_of(pids[name])))
    for replica in replicas:

        def ready(replica=replica) -> bool:
            if not replica.alive():
                raise sb.BenchError(f"{replica.name} {replica.exit_status()}: see {replica.log_path}")
            return sb.http_status(replica.port, "GET", "/ready") == 200

        sb.wait_for(ready, 60, f"{replica.name} to be ready", interval=0.2)
    return replicas


# --- customers --------------------------------------------------------------------


def register_customers(shop: sb.Shop, count: int) -> list[str]:
    """``count`` customers registered and logged in through the gateway; their
    access tokens. A few at a time: a login in flight holds one of its client
    address's attempts (goshop_users.throttle)."""
    tokens: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    todo = queue.SimpleQueue()
    for _ in range(count):
        todo.put(None)

    def work() -> None:
        gateway = sb.Client(shop.port("gateway"))
        try:
            while True:
                try:
                    todo.get_nowait()
                except queue.Empty:
                    return
                account = {"email": f"capacity-{uuid.uuid4().hex[:12]}@example.com", "password": sb.PASSWORD}
                status, body = gateway.call("POST", "/v1/users/register", account)
                if status == 201:
                    status, body = gateway.call("POST", "/v1/users/login", account)
                with lock:
                    if status == 200 and "access_token" in body:
                        tokens.append(body["access_token"])
                    else:
                        errors.append(f"{status} {body}")
        finally:
            gateway.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(LOGIN_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise sb.BenchError(f"registering customers: {errors[:3]}")
    return tokens


# --- the open-loop load -------------------------------------------------------------


@dataclasses.dataclass
class Checkout:
    """One checkout: when it was due and answered (wall clock), its answer."""

    due: float
    answered: float = 0.0
    status: int = 0
    order_id: str | None = None
    error: str | None = None


class OpenLoop:
    """Checkouts due at a fixed rate, sent by a pool of keep-alive connections
    to the gateway. A checkout waits for a free connection if none is, and its
    clock runs meanwhile: the rate does not bend to the answers."""

    def __init__(self, port: int, tokens: list[str], connections: int = MAX_CONNECTIONS):
        self.port = port
        self.tokens = tokens
        self.connections = connections
        self.sent = 0

    def _body_and_headers(self) -> tuple[bytes, dict[str, str]]:
        index = self.sent
        self.sent += 1
        body = REFUSED_BODY if index % REFUSED_EVERY == REFUSED_EVERY - 1 else PAID_BODY
        return json.dumps(body).encode(), {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.tokens[index % len(self.tokens)]}",
            "Idempotency-Key": uuid.uuid4().hex,
        }

    def _worker(self, jobs: queue.SimpleQueue) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT)
        try:
            while (job := jobs.get()) is not None:
                checkout, payload, headers = job
                try:
                    connection.request("POST", "/v1/checkout", body=payload, headers=headers)
                    response = connection.getresponse()
                    raw = response.read()
                    checkout.status = response.status
                    if response.status == 201:
                        checkout.order_id = json.loads(raw)["id"]
                    if response.will_close:
                        connection.close()
                except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                    checkout.error = repr(exc)
                    connection.close()
                checkout.answered = time.time()
        finally:
            connection.close()

    def run(self, rate: float, seconds: float) -> tuple[list[Checkout], float]:
        """Every checkout due in ``seconds`` at ``rate`` per second, once all
        are answered; and how many per second were really sent."""
        jobs: queue.SimpleQueue = queue.SimpleQueue()
        workers = [
            threading.Thread(target=self._worker, args=(jobs,), name=f"checkout-{n}", daemon=True)
            for n in range(self.connections)
        ]
        for worker in workers:
            worker.start()
        count = max(1, round(rate * seconds))
        checkouts = []
        start = time.time() + 0.05
        for index in range(count):
            due = start + index / rate
            payload, headers = self._body_and_headers()
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            checkout = Checkout(due)
            checkouts.append(checkout)
            jobs.put((checkout, payload, headers))
        dispatched = time.time() - start
        for _ in workers:
            jobs.put(None)
        for worker in workers:
            worker.join(CLIENT_TIMEOUT + 5)
        return checkouts, count / max(dispatched, seconds)


# --- what the database says -------------------------------------------------------------


class Sampler:
    """Every SAMPLE_SECONDS, on the bench's one connection (the one ShopCpu
    leaves out): unpublished outbox rows and the oldest one's age, orders
    still new, and what each active PostgreSQL client backend waits on."""

    def __init__(self, db, lock: threading.Lock, meter: sb.Meter | None = None):
        """With ``meter``, a CPU reading of every whole minute too (``minutes``)."""
        self.db = db
        self.lock = lock
        self.meter = meter
        self.minutes: list[sb.Reading] = []
        # (t, backlog, oldest age s, orders new, dead outbox rows, autovacuums
        # of the outboxes so far; the last two as pg_stat_user_tables counts them)
        self.samples: list[tuple[float, int, float, int, int, int]] = []
        self.waits: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> Sampler:
        self._stop.set()
        self._thread.join(10)
        return self

    def _run(self) -> None:
        minute_ends = None
        if self.meter is not None:
            with self.lock:
                minute_ends = self.meter.start()
            minute_began = time.monotonic()
        while not self._stop.wait(SAMPLE_SECONDS):
            if minute_ends is not None and time.monotonic() - minute_began >= 60:
                with self.lock:
                    self.minutes.append(minute_ends())
                    minute_ends = self.meter.start()
                minute_began = time.monotonic()
            with self.lock, self.db.cursor() as cursor:
                cursor.execute(
                    "SELECT (SELECT count(*) FROM orders.outbox WHERE published_at IS NULL) "
                    "+ (SELECT count(*) FROM payments.outbox WHERE published_at IS NULL), "
                    "extract(epoch FROM now() - least("
                    "(SELECT min(created_at) FROM orders.outbox WHERE published_at IS NULL), "
                    "(SELECT min(created_at) FROM payments.outbox WHERE published_at IS NULL))), "
                    "(SELECT count(*) FROM orders.orders WHERE status = 'new')"
                )
                backlog, oldest, new = cursor.fetchone()
                cursor.execute(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*) FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid() "
                    "GROUP BY 1"
                )
                for wait, count in cursor.fetchall():
                    self.waits[wait] += count
                cursor.execute(
                    "SELECT coalesce(sum(n_dead_tup), 0), coalesce(sum(autovacuum_count), 0) FROM pg_stat_user_tables "
                    "WHERE relname = 'outbox'"
                )
                dead, vacuums = cursor.fetchone()
            self.samples.append((time.monotonic(), backlog, float(oldest or 0.0), new, int(dead), int(vacuums)))

    def backlog_slope(self) -> float:
        """Unpublished rows gained per second, least squares over the samples."""
        if len(self.samples) < 3:
            return 0.0
        times = [s[0] for s in self.samples]
        values = [s[1] for s in self.samples]
        mean_t, mean_v = sum(times) / len(times), sum(values) / len(values)
        spread = sum((t - mean_t) ** 2 for t in times)
        return sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / spread if spread else 0.0

    def summary(self) -> str:
        if not self.samples:
            return "no sample"
        backlog = [s[1] for s in self.samples]
        oldest = [s[2] for s in self.samples]
        new = [s[3] for s in self.samples]
        total = sum(self.waits.values()) or 1
        waits = ", ".join(f"{name} {count / total * 100:.0f}%" for name, count in self.waits.most_common(5))
        return (
            f"outbox backlog median {sb.median(backlog):.0f}, max {max(backlog)} rows, slope "
            f"{self.backlog_slope():+.2f} rows/s, oldest unpublished max {max(oldest) * 1000:.0f} ms; orders in "
            f"flight (new) median {sb.median(new):.0f}, max {max(new)}; active PostgreSQL backends per sample "
            f"{sum(self.waits.values()) / len(self.samples):.1f}, waiting on: {waits or 'nothing'}"
        )


def settle(db, lock: threading.Lock, ids: list[str], timeout: float = SETTLE_SECONDS) -> bool:
    """Wait until every order of ``ids`` is final; False if some are not by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with lock, db.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM orders.orders WHERE id = ANY(%s::uuid[]) AND status = 'new'", (ids,))
            (pending,) = cursor.fetchone()
        if not pending:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def order_facts(db, lock: threading.Lock, ids: list[str]) -> dict[str, tuple]:
    """id -> (status, reason, created_at, updated_at, amount, [payment statuses])."""
    with lock, db.cursor() as cursor:
        cursor.execute(
            "SELECT o.id::text, o.status, o.reason, extract(epoch FROM o.created_at), "
            "extract(epoch FROM o.updated_at), o.amount_cents, "
            "coalesce(array_agg(p.status) FILTER (WHERE p.id IS NOT NULL), '{}') "
            "FROM orders.orders o LEFT JOIN payments.payments p ON p.order_id = o.id "
            "WHERE o.id = ANY(%s::uuid[]) GROUP BY o.id",
            (ids,),
        )
        return {row[0]: tuple(row[1:]) for row in cursor.fetchall()}


def invariant_violations(checkouts: list[Checkout], facts: dict[str, tuple]) -> list[str]:
    """Every invariant a step broke, each once with a count and an example."""
    broken: dict[str, list[str]] = collections.defaultdict(list)
    for checkout in checkouts:
        if checkout.error is not None:
            broken["no answer (connection error)"].append(checkout.error)
        elif checkout.status != 201:
            kind = "5xx" if 500 <= checkout.status <= 599 else "not 201"
            broken[f"{kind} answers"].append(str(checkout.status))
    for order_id, (status, reason, _created, _updated, amount, payments) in facts.items():
        if status not in FINAL:
            broken["every order final"].append(f"{order_id} {status}")
            continue
        expected_status = "cancelled" if amount == REFUSED_BODY["amount_cents"] else "paid"
        if status != expected_status and reason != TIMED_OUT:
            broken["the state its amount implies"].append(f"{order_id} {amount} {status} ({reason})")
        expected = TIMED_OUT_PAYMENTS if status == "cancelled" and reason == TIMED_OUT else (FINAL[status],)
        if len(payments) != 1 or payments[0] not in expected:
            broken["exactly one payment, matching"].append(f"{order_id} {status}: {payments}")
    placed = {c.order_id for c in checkouts if c.order_id}
    if placed - set(facts):
        broken["every answered order in orders.orders"].append(str(sorted(placed - set(facts))[:1]))
    return [f"{name}: {len(examples)} (e.g. {examples[0]})" for name, examples in broken.items()]


# --- one run at one rate -------------------------------------------------------------


@dataclasses.dataclass
class Step:
    rate: float
    seconds: float
    sent_rate: float
    checkouts: list[Checkout]
    facts: dict[str, tuple]
    reading: sb.Reading
    sampler: Sampler
    violations: list[str]
    settled_in: float

    @property
    def orders(self) -> int:
        return len(self.facts)

    def latencies(self, which: str) -> list[float]:
        """Seconds, per settled order: ``final`` due -> final, ``http`` due ->
        created, ``saga`` created -> final; ``answer``: due -> 201, per checkout."""
        if which == "answer":
            return [c.answered - c.due for c in self.checkouts if c.status == 201]
        due = {c.order_id: c.due for c in self.checkouts if c.order_id}
        values = []
        for order_id, (status, _reason, created, updated, *_rest) in self.facts.items():
            if status in FINAL and order_id in due:
                start = due[order_id] if which in ("final", "http") else float(created)
                end = float(created) if which == "http" else float(updated)
                values.append(end - start)
        return values

    def p(self, which: str, fraction: float) -> float:
        values = self.latencies(which)
        return sb.percentile(values, fraction) if values else float("inf")

    @property
    def failures(self) -> list[str]:
        found = list(self.violations)
        if self.sent_rate < self.rate * RATE_SHORTFALL:
            found.append(f"the generator sent {self.sent_rate:.1f}/s of the {self.rate:.1f}/s asked")
        p99 = self.p("final", 0.99)
        if p99 >= P99_LIMIT:
            found.append(f"p99 due -> final {p99 * 1000:.0f} ms >= {P99_LIMIT * 1000:.0f} ms")
        growth = self.sampler.backlog_slope() * self.seconds
        if growth > self.rate:
            found.append(f"the outbox backlog grew by {growth:.0f} rows over the step (> {self.rate:.0f}, 1 s of load)")
        return found

    @property
    def passed(self) -> bool:
        return not self.failures

    def line(self) -> str:
        verdict = "pass" if self.passed else "FAIL: " + "; ".join(self.failures)
        return (
            f"{self.rate:7.1f}/s x {self.seconds:.0f} s: {self.orders} orders, due->final p50 "
            f"{self.p('final', 0.5) * 1000:.0f} ms p99 {self.p('final', 0.99) * 1000:.0f} ms, 201 p99 "
            f"{self.p('answer', 0.99) * 1000:.0f} ms, shop {self.reading.shop.total / self.reading.seconds:.2f} cores, "
            f"{self.reading.shop.total / max(self.orders, 1) * 1000:.2f} ms CPU/order  {verdict}"
        )


class Bench:
    """One shop (one layout) and what runs against it."""

    def __init__(self, shop: sb.Shop, db, meter: sb.Meter, loop: OpenLoop):
        self.shop = shop
        self.db = db
        self.lock = threading.Lock()
        self.meter = meter
        self.loop = loop
        # Set when a step leaves an order unsettled: its shop's logs are kept.
        self.unsettled = False

    def step(self, rate: float, seconds: float) -> Step:
        with self.lock:
            stop = self.meter.start()
        sampler = Sampler(self.db, self.lock, self.meter if seconds > 60 else None).start()
        checkouts, sent_rate = self.loop.run(rate, seconds)
        ids = [c.order_id for c in checkouts if c.order_id]
        began = time.monotonic()
        settled = settle(self.db, self.lock, ids)
        settled_in = time.monotonic() - began
        sampler.stop()
        with self.lock:
            reading = stop()
        facts = order_facts(self.db, self.lock, ids)
        violations = invariant_violations(checkouts, facts)
        if not settled and not any(v.startswith("every order final") for v in violations):
            violations.append(f"every order final: not all within {SETTLE_SECONDS:.0f} s")
        self.unsettled = self.unsettled or not settled
        return Step(rate, seconds, sent_rate, checkouts, facts, reading, sampler, violations, settled_in)


def search(bench: Bench, settings: Settings) -> tuple[float, list[Step]]:
    """Up by half while steps pass, then bisect; the highest passing rate (0 if none).

    A rate fails only when two steps in a row at it fail: on a shared machine
    a neighbour's burst can sink one, and one spurious failure low down would
    cap the whole search (the hold confirms what the search found)."""
    steps: list[Step] = []
    best, lowest_failure = 0.0, float("inf")
    rate = settings.start_rate
    while len(steps) < settings.max_steps:
        result = bench.step(rate, settings.step_seconds)
        steps.append(result)
        print(f"  step {len(steps)}: {result.line()}", flush=True)
        if not result.passed and len(steps) < settings.max_steps:
            time.sleep(2.0)
            result = bench.step(rate, settings.step_seconds)
            steps.append(result)
            print(f"  step {len(steps)} (the same rate again): {result.line()}", flush=True)
        if result.passed:
            best = max(best, rate)
        else:
            lowest_failure = min(lowest_failure, rate)
        if lowest_failure == float("inf"):
            rate = rate * 1.5
        elif best == 0.0:
            rate = rate / 2
        elif (lowest_failure - best) / best <= settings.precision:
            break
        else:
            rate = (best + lowest_failure) / 2
        time.sleep(2.0)
    return best, steps


# --- reporting -----------------------------------------------------------------


def busiest_python(step: Step, shop: sb.Shop, replicas: list[TetheredReplica]) -> tuple[str, int] | None:
    """The shop's Python process (service, worker or replica) that used the most CPU in ``step``."""
    pids = {**shop.service_pids(), **{r.name: r.pid for r in replicas}}
    ranked = sorted(((v, n) for n, v in step.reading.shop.by_group.items() if n in pids), reverse=True)
    return (ranked[0][1], pids[ranked[0][1]]) if ranked else None


def where_cpu_goes(step: Step) -> None:
    """The cores each process used, and how busy the machine was."""
    reading = step.reading
    cores = os.cpu_count() or 1
    machine = reading.machine / reading.seconds
    print(
        f"    machine: {machine:.2f} of {cores} cores busy ({max(0.0, 1 - machine / cores) * 100:.0f}% idle); "
        f"the shop {reading.shop.total / reading.seconds:.2f}, the load generator (this script) "
        f"{reading.own / reading.seconds:.2f}, wrk {reading.wrk / reading.seconds:.2f}, anything else "
        f"{reading.foreign_cores:.2f}",
        flush=True,
    )
    print("    per process, cores over the step (a Python process near 1.00 is bound by its GIL):", flush=True)
    sb.print_cpu_table(reading.shop, reading.seconds, "cores", 1)
    print(f"    {step.sampler.summary()}", flush=True)


def report_limit(label: str, held: Step, floor: dict[str, float]) -> None:
    print(f"\n-- {label}: the limit, held {held.seconds:.0f} s", flush=True)
    h.report(f"{label}: sustained checkout rate", held.rate, "orders/s", sb.CORNICE + " (wrk -c16)", floor["rps"])
    for name, fraction in (("p50", 0.5), ("p99", 0.99)):
        h.report(
            f"{label}: checkout due -> order final {name}",
            held.p("final", fraction) * 1000,
            "ms",
            f"{sb.CORNICE} {name} under wrk",
            floor[f"{name}_ms"],
        )
    for name, fraction in (("p50", 0.5), ("p99", 0.99)):
        print(
            f"    {name}: due -> created (HTTP path) {held.p('http', fraction) * 1000:.1f} ms, created -> final "
            f"(saga) {held.p('saga', fraction) * 1000:.1f} ms",
            flush=True,
        )
    h.report(
        f"{label}: gateway p99 (due -> 201)",
        held.p("answer", 0.99) * 1000,
        "ms",
        f"{sb.CORNICE} p99 under wrk",
        floor["p99_ms"],
    )
    per_order = held.reading.shop.total / held.orders * 1000
    h.report(f"{label}: CPU per order", per_order, "ms", f"{sb.CORNICE} CPU/req", floor["cpu_ms"])
    print("    per process, CPU per order:", flush=True)
    sb.print_cpu_table(held.reading.shop, held.orders, "ms/order", 1000)
    where_cpu_goes(held)


def by_minute(step: Step) -> None:
    """Each whole minute of a long step: p99 due -> final of the checkouts due
    in it, the shop's CPU per order placed in it (a figure that climbs
    minute after minute is a plan that degrades as the tables grow, or a
    leak; one that jumps with "others" is the machine's neighbours), and at
    the minute's end the outboxes' unpublished rows, their dead rows not yet
    vacuumed and how many times autovacuum has run on them."""
    if not step.checkouts or not step.sampler.minutes:
        return
    first = step.checkouts[0].due
    due = {c.order_id: c.due for c in step.checkouts if c.order_id}
    placed: collections.Counter[int] = collections.Counter(int((d - first) // 60) for d in due.values())
    buckets: dict[int, list[float]] = collections.defaultdict(list)
    for order_id, (status, _reason, _created, updated, *_rest) in step.facts.items():
        if status in FINAL and order_id in due:
            buckets[int((due[order_id] - first) // 60)].append(float(updated) - due[order_id])
    started = step.sampler.samples[0][0] if step.sampler.samples else 0.0

    def at_minute_end(minute: int) -> tuple[int, int, int]:
        end = started + (minute + 1) * 60
        last = [s for s in step.sampler.samples if s[0] <= end][-1:] or [(0.0, 0, 0.0, 0, 0, 0)]
        return last[0][1], last[0][4], last[0][5] - step.sampler.samples[0][5]

    top = [
        name
        for name, _ in sorted(step.reading.shop.by_group.items(), key=lambda item: -item[1])
        if name != sb.ShopCpu.EXCLUDED
    ][:3]
    print(
        "    by minute: p99 due -> final ms (orders final of those placed) | shop CPU ms/order placed (of it: "
        + ", ".join(top)
        + ") | shop cores | other processes' cores | outbox at the minute's end: unpublished, dead rows, autovacuums",
        flush=True,
    )
    for minute, reading in enumerate(step.sampler.minutes):
        values, count = buckets.get(minute, []), placed.get(minute, 0)
        if not count:
            continue
        parts = " ".join(f"{reading.shop.by_group.get(name, 0.0) / count * 1000:.2f}" for name in top)
        p99 = f"{sb.percentile(values, 0.99) * 1000:6.0f}" if values else "     -"
        backlog, dead, vacuums = at_minute_end(minute)
        print(
            f"      {minute + 1}: {p99} ({len(values)}/{count}) | {reading.shop.total / count * 1000:6.2f} ({parts}) | "
            f"{reading.shop.total / reading.seconds:5.2f} | {reading.foreign_cores:5.2f} | "
            f"{backlog}, {dead}, {vacuums}",
            flush=True,
        )


def rss_kib(pids: dict[str, int]) -> dict[str, int]:
    found = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError, ValueError, StopIteration):
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            found[name] = int(next(line for line in lines if line.startswith("VmRSS:")).split()[1])
    return found


def backends(db, lock: threading.Lock) -> int:
    with lock, db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        return cursor.fetchone()[0]


def profile(bench: Bench, rate: float, seconds: int, target: tuple[str, int], scratch: Path) -> None:
    """py-spy on ``target`` while checkouts flow at ``rate``: where its CPU
    goes, by the functions on the stack when it held the GIL."""
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        print("    profile: skipped (no py-spy: .venv/bin/pip install py-spy)", flush=True)
        return
    name, pid = target
    out = scratch / f"py-spy-{name}.txt"
    argv = [py_spy, "record", "--gil", "--nonblocking", "-r", "50", "-d", str(seconds), "-f", "raw", "-o", str(out)]
    popen = subprocess.Popen([*argv, "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    bench.loop.run(rate, seconds)
    try:
        _, err = popen.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()
        err = "timed out"
    if not out.exists():
        print(f"    profile: py-spy failed: {err.strip()[-300:]}", flush=True)
        return
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [frame for frame in stack.split(";") if frame]
        own[short_frame(frames[-1])] += count
        for frame in {short_frame(f) for f in frames if "goshop" in f or "sqlalchemy" in f or "kafka" in f}:
            if not frame.startswith(ENTRY_FRAMES):
                inclusive[frame] += count
    if not total:
        print("    profile: no sample with the GIL held", flush=True)
        return
    print(
        f"    profile: py-spy record --gil on {name} (pid {pid}) for {seconds} s at {rate:.0f}/s: {total} samples "
        f"with the GIL held (raw stacks: {out})",
        flush=True,
    )
    print("      most samples in the function itself:", flush=True)
    for frame, count in own.most_common(8):
        print(f"        {count / total * 100:5.1f}%  {frame}", flush=True)
    print("      most samples with the function on the stack (goshop, SQLAlchemy, kafka):", flush=True)
    for frame, count in inclusive.most_common(10):
        print(f"        {count / total * 100:5.1f}%  {frame}", flush=True)


# A process's own entry (its main, its server loop): on every stack of its thread, telling nothing.
ENTRY_FRAMES = ("<module> ", "main ", "serve ", "Servers.run ")


def short_frame(frame: str) -> str:
    """``function (path/to/module.py:line)`` as py-spy writes it, with the path
    cut to its package and no line number."""
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    for anchor in ("site-packages", "goshop_common", "goshop_orders", "goshop_payments", "goshop_gateway"):
        if anchor in parts:
            index = parts.index(anchor)
            parts = parts[index + 1 :] if anchor == "site-packages" else parts[index:]
            break
    else:
        parts = parts[-2:]
    return f"{function} ({'/'.join(parts)})"


# --- PostgreSQL's notifying commits -----------------------------------------------------

CEILING_TABLE = "public.bench_capacity_commits"
CEILING_SESSIONS = 8


def commit_ceiling(database_url: str, seconds: float) -> dict[str, float]:
    """Durable commits per second of CEILING_SESSIONS sessions, each inserting
    one row a transaction into a table of its own, with and without a
    ``pg_notify`` in the transaction (as the outbox trigger does).

    A notifying transaction holds a database-wide lock from its pre-commit
    until its commit is flushed, so notifying commits cannot share a WAL flush
    (group commit) and go one flush at a time: the ceiling every order's and
    every payment batch's commit is under, however many cores there are."""
    import psycopg2

    setup = psycopg2.connect(database_url)
    setup.autocommit = True
    with setup.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {CEILING_TABLE} (id bigserial PRIMARY KEY, session int)")
    figures = {}
    try:
        for label, statement in (
            ("without NOTIFY", None),
            ("with NOTIFY", "SELECT pg_notify('bench_capacity', 'x')"),
        ):
            counts = [0] * CEILING_SESSIONS
            start = threading.Barrier(CEILING_SESSIONS + 1)
            deadline: list[float] = []

            def session(slot: int, statement=statement, counts=counts, start=start, deadline=deadline) -> None:
                connection = psycopg2.connect(database_url)
                try:
                    with connection.cursor() as cursor:
                        cursor.execute("SET synchronous_commit = on")
                        connection.commit()
                        start.wait()
                        while time.monotonic() < deadline[0]:
                            cursor.execute(f"INSERT INTO {CEILING_TABLE} (session) VALUES (%s)", (slot,))
                            if statement:
                                cursor.execute(statement)
                            connection.commit()
                            counts[slot] += 1
                finally:
                    connection.close()

            threads = [threading.Thread(target=session, args=(n,), daemon=True) for n in range(CEILING_SESSIONS)]
            for thread in threads:
                thread.start()
            deadline.append(time.monotonic() + seconds)
            start.wait()
            for thread in threads:
                thread.join(seconds + 30)
            figures[label] = sum(counts) / seconds
    finally:
        with setup.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {CEILING_TABLE}")
        setup.close()
    return figures


def report_commit_ceiling(database_url: str, seconds: float) -> None:
    figures = commit_ceiling(database_url, seconds)
    h.report(
        f"durable commits/s, {CEILING_SESSIONS} sessions, with NOTIFY",
        figures["with NOTIFY"],
        "commits/s",
        "the same without NOTIFY",
        figures["without NOTIFY"],
    )
    print(
        "    every order's commit (orders service) and every payment batch's (payments consumer) notifies, through "
        "the outbox trigger: together they share the first figure",
        flush=True,
    )


# --- the floor ------------------------------------------------------------------------


def floor_figures(children: sb.Children, target: sb.Target, script: Path, meter: sb.Meter, seconds: int) -> dict:
    result = sb.run_wrk(children, target, script, seconds, meter).checked(target.expect, sb.CORNICE)
    return {"rps": result.rps, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "cpu_ms": result.server_cpu_ms}


def mean_floor(readings: list[dict]) -> dict[str, float]:
    return {key: sum(r[key] for r in readings) / len(readings) for key in readings[0]}


# --- one layout ---------------------------------------------------------------------


def fixed_rates(bench: Bench, settings: Settings, rates: list[float], label: str) -> None:
    """One step at each of ``rates``, each reported with what bounded it: for
    a before/after comparison at the same load (no search, no hold)."""
    print(f"fixed rates, {settings.step_seconds:.0f} s each: {', '.join(f'{r:g}' for r in rates)}", flush=True)
    for number, rate in enumerate(rates, start=1):
        result = bench.step(rate, settings.step_seconds)
        print(f"  step {number}: {result.line()}", flush=True)
        by_minute(result)
        if result.orders:
            print("    per process, CPU per order:", flush=True)
            sb.print_cpu_table(result.reading.shop, result.orders, "ms/order", 1000)
        print(f"    {result.sampler.summary()}", flush=True)
        print(
            f"    p50/p99: due -> created {result.p('http', 0.5) * 1000:.0f}/{result.p('http', 0.99) * 1000:.0f} ms, "
            f"created -> final {result.p('saga', 0.5) * 1000:.0f}/{result.p('saga', 0.99) * 1000:.0f} ms; "
            f"machine {result.reading.machine / result.reading.seconds:.2f} cores busy, anything else "
            f"{result.reading.foreign_cores:.2f}",
            flush=True,
        )
        time.sleep(2.0)


class LayoutShop:
    """A fresh shop of one layout (``replica_count`` replicas of each
    worker) with its customers, the bench's connection and ``Bench``; closed,
    everything it started is stopped and its scratch directory removed."""

    def __init__(self, replica_count: int, settings: Settings, children: sb.Children, cornice):
        self.replica_count = replica_count
        self.settings = settings
        self.children = children
        self.cornice = cornice
        self.scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
        (self.scratch / "bench.pid").write_text(str(os.getpid()))
        self.shop: sb.Shop | None = None
        self.db = None
        self.replicas: list[TetheredReplica] = []
        self.bench: Bench | None = None
        self.seen: set[int] = set()

    def open(self) -> LayoutShop:
        import psycopg2

        self.shop = shop = sb.start_shop(self.children, self.scratch)
        if self.replica_count > 1:
            self.replicas = start_replicas(shop, self.scratch)
            print(f"replicas: {', '.join(f'{r.name} (pid {r.pid}, :{r.port})' for r in self.replicas)}", flush=True)
        self.db = psycopg2.connect(shop.database_url)
        self.db.autocommit = True
        shop_cpu = sb.ShopCpu(shop, self.db)
        shop_cpu.extra = {r.pid: r.name for r in self.replicas}
        self.meter = sb.Meter(shop_cpu, [self.cornice[0].pid])
        began = time.monotonic()
        tokens = register_customers(shop, self.settings.customers)
        print(f"{len(tokens)} customers registered and logged in in {time.monotonic() - began:.1f} s", flush=True)
        self.bench = Bench(shop, self.db, self.meter, OpenLoop(shop.port("gateway"), tokens))
        # Warm-up, not judged: connections, caches, a consumer group that has just rebalanced.
        self.bench.step(self.settings.start_rate, min(5.0, self.settings.step_seconds))
        return self

    def pids(self) -> dict[str, int]:
        assert self.shop is not None
        return {**self.shop.service_pids(), **{r.name: r.pid for r in self.replicas}}

    def close(self) -> None:
        if self.shop is not None:
            self.seen |= sb.collect_pids(self.shop, self.children)
        self.seen |= {r.pid for r in self.replicas}
        for replica in self.replicas:
            replica.stop()
        if self.db is not None:
            with contextlib.suppress(Exception):
                self.db.close()
        if self.shop is not None:
            sb.stop_shop(self.children, self.shop)
        left = sorted(pid for pid in self.seen if sb.pid_alive(pid) and pid != self.cornice[0].pid)
        if left:
            print(f"cleanup: WARNING: processes left running: {left}; scratch kept: {self.scratch}", flush=True)
        elif self.bench is not None and self.bench.unsettled:
            print(f"cleanup: a step left orders unsettled; its shop's logs are kept in {self.scratch}", flush=True)
        else:
            shutil.rmtree(self.scratch, ignore_errors=True)


def hold(layout: LayoutShop, rate: float, attempt: int) -> Step:
    """``rate`` for the hold's seconds on ``layout``'s shop, reported as it ends."""
    settings, bench = layout.settings, layout.bench
    names = layout.pids()
    rss_before, backends_before = rss_kib(names), backends(layout.db, bench.lock)
    print(f"\nhold: {rate:.1f}/s for {settings.hold_seconds:.0f} s (attempt {attempt})", flush=True)
    held = bench.step(rate, settings.hold_seconds)
    print(f"  {held.line()}", flush=True)
    by_minute(held)
    print(f"    {held.sampler.summary()}", flush=True)
    rss_after, backends_after = rss_kib(names), backends(layout.db, bench.lock)
    grown = ", ".join(f"{n} {(rss_after[n] - rss_before[n]) / 1024:+.1f}" for n in sorted(rss_after) if n in rss_before)
    print(
        f"    over the hold: resident memory (MiB) {grown}; PostgreSQL client backends "
        f"{backends_before} -> {backends_after}",
        flush=True,
    )
    return held


def run_layout(
    replica_count: int, settings: Settings, children: sb.Children, cornice, rates: list[float] | None = None
) -> dict | None:
    """A fresh shop with ``replica_count`` replicas of each worker: search;
    then each hold on a fresh shop of its own (make run's broker keeps every
    record it is sent, and serves each fetch at a cost that grows with them:
    a shop that has just taken the search's orders is not the one a
    sustained rate is judged on); profile (or, with ``rates``, one step at
    each). Returns the figures of the summary."""
    label = f"{replica_count} replica{'s' if replica_count > 1 else ''} of each worker"
    print(f"\n== {label}", flush=True)
    layout = LayoutShop(replica_count, settings, children, cornice)
    # The floor's wrk script outlives each layout's scratch directory.
    own = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    try:
        layout.open()
        cornice_popen, cornice_port = cornice
        floor_target = sb.Target(
            sb.CORNICE, cornice_port, "POST", "/v1/orders", 201, "", body=sb.ORDER_BODY, cpu_pid=cornice_popen.pid
        )
        floor_script = sb.lua_script(floor_target, own)
        floors = [floor_figures(children, floor_target, floor_script, layout.meter, settings.floor_seconds)]
        print(
            f"{sb.CORNICE}: {floors[0]['rps']:.0f} req/s, p99 {floors[0]['p99_ms']:.1f} ms, "
            f"{floors[0]['cpu_ms']:.3f} ms CPU/req",
            flush=True,
        )
        if rates:
            fixed_rates(layout.bench, settings, rates, label)
            report_commit_ceiling(layout.shop.database_url, settings.floor_seconds)
            return None
        print(
            f"search: steps of {settings.step_seconds:.0f} s from {settings.start_rate:.0f}/s, up by half until a rate "
            f"fails twice in a row, then bisected to {settings.precision * 100:.0f}%",
            flush=True,
        )
        best, steps = search(layout.bench, settings)
        if all(step.passed for step in steps):
            print(f"  (no step failed in {len(steps)} steps: the limit is above {best:.1f}/s)", flush=True)
        if best == 0.0:
            raise sb.BenchError(f"{label}: no rate passed (the lowest tried failed)")
        failing = [s for s in steps if not s.passed and s.rate > best]
        first_failure = min(failing, key=lambda s: s.rate) if failing else None
        if first_failure is not None:
            print(f"\n-- {label}: the lowest failing step ({first_failure.rate:.1f}/s), where it ran out", flush=True)
            where_cpu_goes(first_failure)
        rate: float | None = best
        held_rate: float | None = None
        failed_rate: float | None = None
        holds: list[Step] = []
        while rate is not None and len(holds) < MAX_HOLDS:
            layout.close()
            layout = LayoutShop(replica_count, settings, children, cornice)
            print("\n(a fresh shop for the hold, its broker empty)", flush=True)
            layout.open()
            step = hold(layout, rate, len(holds) + 1)
            holds.append(step)
            if step.passed:
                held_rate = rate
            else:
                failed_rate = rate
            rate = next_hold(held_rate, failed_rate, settings.precision)
        passed = [step for step in holds if step.passed]
        held = max(passed, key=lambda step: step.rate) if passed else holds[-1]
        floors.append(floor_figures(children, floor_target, floor_script, layout.meter, settings.floor_seconds))
        floor = mean_floor(floors)
        print(
            f"{sb.CORNICE} after the hold: {floors[1]['rps']:.0f} req/s, {floors[1]['cpu_ms']:.3f} ms CPU/req "
            f"(before: {floors[0]['cpu_ms']:.3f}); the mean of the two is the baseline",
            flush=True,
        )
        if not held.passed:
            print(f"WARNING: {label}: every hold failed; the figures below are of a failed hold", flush=True)
        report_limit(label, held, floor)
        target = busiest_python(held, layout.shop, layout.replicas)
        if target is not None and settings.profile_seconds:
            profile(layout.bench, held.rate, settings.profile_seconds, target, layout.scratch)
        print(f"\n-- {label}: PostgreSQL's notifying commits, the shop idle", flush=True)
        time.sleep(2.0)
        report_commit_ceiling(layout.shop.database_url, settings.floor_seconds)
        return {
            "label": label,
            "rate": held.rate,
            "passed": held.passed,
            "p50": held.p("final", 0.5),
            "p99": held.p("final", 0.99),
            "gateway_p99": held.p("answer", 0.99),
            "cpu_ms": held.reading.shop.total / held.orders * 1000,
            "floor_cpu_ms": floor["cpu_ms"],
        }
    finally:
        layout.close()
        shutil.rmtree(own, ignore_errors=True)


def run(settings: Settings, layouts: list[int], rates: list[float] | None = None) -> int:
    started = time.monotonic()
    print(h.background_load(1.0), flush=True)
    sb.stop_leftovers(SCRATCH_PREFIX, "bench_capacity")
    children = sb.Children()
    summaries = []
    try:
        cornice = sb.start_floor(children, "cornice")
        print(f"floor: Cornice POST :{cornice[1]}/v1/orders (pid {cornice[0].pid})", flush=True)
        for count in layouts:
            summary = run_layout(count, settings, children, cornice, rates)
            if summary is not None:
                summaries.append(summary)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        children.stop_all()
    print(f"\n== summary ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores)", flush=True)
    for summary in summaries:
        verdict = "held" if summary["passed"] else "FAILED to hold"
        print(
            f"{summary['label']}: {summary['rate']:.1f} checkouts/s {verdict}; due->final p50 "
            f"{summary['p50'] * 1000:.0f} ms, p99 {summary['p99'] * 1000:.0f} ms; gateway p99 "
            f"{summary['gateway_p99'] * 1000:.0f} ms; {summary['cpu_ms']:.2f} ms CPU/order = "
            f"{summary['cpu_ms'] / summary['floor_cpu_ms']:.1f} x the Cornice floor's {summary['floor_cpu_ms']:.3f} "
            "ms/req",
            flush=True,
        )
    print(f"total wall time {time.monotonic() - started:.0f} s", flush=True)
    return 0 if all(s["passed"] for s in summaries) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short steps, 30 s holds, one bisection: a smoke run")
    parser.add_argument("--replicas", choices=("1", "2", "both"), default="both", help="which layouts (default both)")
    parser.add_argument("--hold", type=float, help="hold seconds (default 300; quick 30)")
    parser.add_argument("--step", type=float, help="search step seconds (default 20; quick 8)")
    parser.add_argument("--start-rate", type=float, help="first rate of the search, checkouts/s (default 20)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy run")
    parser.add_argument(
        "--rates", help="comma-separated checkouts/s: one step at each, no search or hold (a before/after at one load)"
    )
    options = parser.parse_args(argv)
    settings = QUICK if options.quick else FULL
    settings = dataclasses.replace(
        settings,
        hold_seconds=options.hold or settings.hold_seconds,
        step_seconds=options.step or settings.step_seconds,
        start_rate=options.start_rate or settings.start_rate,
        profile_seconds=0 if options.no_profile else settings.profile_seconds,
    )
    layouts = [1, 2] if options.replicas == "both" else [int(options.replicas)]
    rates = [float(rate) for rate in options.rates.split(",")] if options.rates else None
    print(f"bench_capacity ({'quick' if options.quick else 'full'} run): {settings}", flush=True)
    return sb.run_bench(lambda: run(settings, layouts, rates))


if __name__ == "__main__":
    sys.exit(main())
