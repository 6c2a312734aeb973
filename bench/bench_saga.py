"""The checkout saga on a real Tansu broker and Postgres: how fast an order
settles, and what the outbox relay costs over producing directly.

    .venv/bin/python bench/bench_saga.py

Starts its own non-durable Postgres and Tansu broker on free ports of
127.0.0.1 and destroys both on exit.

1. Order -> final-state latency. An order and its outbox row are committed
   in one transaction (``Orders.create``), then ``orders.orders.status`` is
   polled every 5 ms until it is no longer ``new``; the clock starts when the
   commit returns. The saga is the outboxer, the payments consumer and the
   orders consumer as threads of this process (tests/saga_runtime.py).
   Figure: the outboxer woken by LISTEN/NOTIFY (the default build). Baseline:
   a poll-only outboxer (``listen=False``, ``outbox_poll_seconds=1``). The
   consumers stay up for the whole phase; the two outboxers take turns in
   interleaved rounds, so drift on a noisy machine hits both alike. Orders are
   created one at a time with a random pause before each, so that their
   arrival is spread over the outboxer's poll period (baseline) and over the
   consumers' 100 ms fetch cycle (both).
2. Relay throughput. 2000 outbox rows committed in one transaction, then one
   Relay calls relay_once() (batches of 100) until nothing is left. Baseline:
   the same 2000 payloads produced directly with the same producer (send all,
   flush). Interleaved rounds; medians over rounds. The consumers are stopped
   first, so nothing competes with the relay for the CPU.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h
import sqlalchemy as sa
from sqlalchemy.orm import Session as DbSession

from goshop_common.db.session import make_engine
from goshop_common.messaging.kafka import CONSUMER_DEFAULTS, ensure_topics, make_producer
from goshop_common.messaging.outbox import add_event
from goshop_devtools.broker import EmbeddedBroker, start_on_free_port
from goshop_devtools.postgres import EmbeddedPostgres, free_port
from goshop_devtools.settings import settings_of
from goshop_domain.events import ALL_TOPICS, ORDER_CREATED, ORDERS_TOPIC, event_headers
from goshop_orders.models import OUTBOX
from goshop_orders.orders import Orders
from goshop_outboxer.__main__ import build as build_outboxer
from goshop_outboxer.relay import Relay
from tests.saga_runtime import FINAL, SagaRuntime, Worker, saga_settings
from tests.support import migrate_all

# Phase 1: 3 rounds x (14 NOTIFY orders + 4 poll-only orders) = 42 + 12 orders.
LATENCY_ROUNDS = 3
NOTIFY_ORDERS_PER_ROUND = 14
POLL_ORDERS_PER_ROUND = 4
WARMUP_ORDERS = 2
STATUS_POLL_SECONDS = 0.005
ORDER_TIMEOUT_SECONDS = 15
# The random pause before each order: over the consumers' fetch cycle
# (fetch_max_wait_ms=100) for NOTIFY, over the 1 s poll period for poll-only.
NOTIFY_PAUSE_SECONDS = (0.02, 0.12)
POLL_PAUSE_SECONDS = (0.02, 1.02)

# Phase 2.
RELAY_ROWS = 2000
RELAY_ROUNDS = 3
RELAY_WARMUP_ROWS = 200
RELAY_BATCH_SIZE = 100

STATUS_QUERY = sa.text("SELECT status FROM orders.orders WHERE id = :id")
# Where an order's time goes, from the rows the saga leaves behind. An outbox
# row's published_at is now() of the relay's transaction: its start, before
# the claim and the produce. So each "Kafka hop" below runs from the relay
# transaction's start to the consumer's handler: claim, produce with acks=all,
# the wait for the consumer's fetch to be answered, and the consumer's begin.
STAGES_QUERY = sa.text(
    """
    SELECT extract(epoch FROM ob.published_at - o.created_at),
           extract(epoch FROM p.created_at - ob.published_at),
           extract(epoch FROM pb.published_at - p.created_at),
           extract(epoch FROM o.updated_at - pb.published_at)
    FROM orders.orders o
    JOIN orders.outbox ob ON ob.key = o.id::text
    JOIN payments.payments p ON p.order_id = o.id
    JOIN payments.outbox pb ON pb.key = o.id::text
    WHERE o.id = ANY(:ids)
    """
)
STAGES = (
    "order commit -> orders relay txn",
    "Kafka hop 1 (-> payment decided)",
    "payment -> payments relay txn",
    "Kafka hop 2 (-> order settled)",
)
LISTENING_QUERY = sa.text(
    "SELECT 1 FROM pg_stat_activity WHERE pid = :pid AND state = 'idle' AND query ILIKE 'LISTEN%'"
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank, as the harness's load generator computes it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


# --- infrastructure ---------------------------------------------------------


@contextlib.contextmanager
def infrastructure() -> Iterator[tuple[EmbeddedPostgres, EmbeddedBroker, str]]:
    """A migrated non-durable Postgres and a Tansu broker with the topics;
    yields (postgres, broker, scratch dir) and destroys both on exit."""
    scratch = Path(tempfile.mkdtemp(prefix="goshop-bench-saga-"))
    postgres = EmbeddedPostgres(scratch / "data", free_port(), durable=False)
    broker: EmbeddedBroker | None = None
    try:
        postgres.start()
        migrate_all(postgres.url)
        broker = start_on_free_port(scratch)
        ensure_topics(broker.bootstrap, ALL_TOPICS)
        yield postgres, broker, str(scratch)
    finally:
        try:
            if broker is not None:
                broker.stop()
        finally:
            postgres.destroy()
            shutil.rmtree(scratch, ignore_errors=True)


# --- machine load -------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [0] is field 3 (state)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live children and its reaped ones (a
    postmaster reaps every backend, so exited backends are counted too)."""
    ticks = 0
    with contextlib.suppress(OSError):
        fields = _stat_fields(pid)
        ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(int(entry.name))
            if int(fields[1]) == pid:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class StackLoad:
    """h.MachineLoad, with the Postgres and the Tansu that this script started
    counted apart from everything else on the box."""

    def __init__(self, postgres: EmbeddedPostgres, broker: EmbeddedBroker):
        self.pids = {
            "Postgres": int((postgres.data_dir / "postmaster.pid").read_text().split()[0]),
            "Tansu": broker._process.pid,
        }

    def _sample(self) -> tuple[float, float, float, dict[str, float]]:
        cpu = {name: process_tree_cpu(pid) for name, pid in self.pids.items()}
        return time.perf_counter(), h.machine_busy_seconds(), cpu_seconds(), cpu

    def start(self) -> StackLoad:
        self._before = self._sample()
        return self

    def summary(self, label: str) -> str:
        wall0, busy0, own0, stack0 = self._before
        wall1, busy1, own1, stack1 = self._sample()
        wall = wall1 - wall0
        busy, own = (busy1 - busy0) / wall, (own1 - own0) / wall
        stack = {name: (stack1[name] - stack0[name]) / wall for name in stack1}
        other = max(0.0, busy - own - sum(stack.values()))
        parts = ", ".join(f"{name} {cores:.2f}" for name, cores in stack.items())
        line = (
            f"machine CPU during {label}: {busy:.2f} of {os.cpu_count()} cores busy; this process {own:.2f}, "
            f"{parts}, other processes {other:.2f}"
        )
        if other > 0.2:
            line += "  <-- WARNING: another job shared the CPU; figures are unreliable"
        return line


# --- phase 1: order -> final state ------------------------------------------


def start_outboxer(runtime: SagaRuntime, producer, listen: bool, client: sa.Engine) -> Worker:
    """SagaRuntime.add_outboxer with a choice of listener; returns once a
    listening outboxer has run its LISTEN, so no notification is missed."""
    outboxer = build_outboxer(runtime.settings, runtime.engine, producer, listen=listen)
    runtime.outboxers.append(outboxer)
    worker = Worker("outboxer" if listen else "outboxer-poll", outboxer.run, outboxer.stop)
    runtime.workers.append(worker)
    if listen:
        deadline = time.monotonic() + 10
        while True:
            connection = outboxer.listener.connection
            if connection is not None and not connection.closed:
                with client.connect() as db:
                    if db.execute(LISTENING_QUERY, {"pid": connection.get_backend_pid()}).first():
                        break
            if time.monotonic() > deadline or worker.errors:
                raise RuntimeError(f"the outboxer is not listening after 10 s: {worker.errors}")
            time.sleep(0.01)
    return worker


def stop_worker(worker: Worker) -> None:
    worker.stop()
    worker.thread.join(10)
    if worker.thread.is_alive():
        raise RuntimeError(f"{worker.name} did not stop")
    if worker.errors:
        raise RuntimeError(f"{worker.name} failed: {worker.errors!r}")


def create_order(client: sa.Engine, amount_cents: int) -> uuid.UUID:
    """One order and its outbox row, in a committed transaction of its own."""
    with DbSession(client) as db, db.begin():
        order = Orders(db, now).create(uuid.uuid4(), amount_cents, "RUB")
        return order.id


def order_latency(client: sa.Engine, status_db: sa.Connection, amount_cents: int) -> tuple[uuid.UUID, float, str]:
    """(order id, seconds from the order's commit until its status is no
    longer 'new', that status)."""
    order_id = create_order(client, amount_cents)
    committed = time.perf_counter()
    while True:
        status = status_db.execute(STATUS_QUERY, {"id": order_id}).scalar_one()
        elapsed = time.perf_counter() - committed
        if status != "new":
            if status not in FINAL:
                raise RuntimeError(f"order {order_id} ended {status!r}")
            return order_id, elapsed, status
        if elapsed > ORDER_TIMEOUT_SECONDS:
            raise RuntimeError(f"order {order_id} still new after {ORDER_TIMEOUT_SECONDS} s")
        time.sleep(STATUS_POLL_SECONDS)


def stage_medians(client: sa.Engine, order_ids: list[uuid.UUID]) -> list[float]:
    """Median seconds of each of STAGES over the orders."""
    with client.connect() as db:
        rows = db.execute(STAGES_QUERY, {"ids": order_ids}).all()
    if len(rows) != len(order_ids):
        raise RuntimeError(f"stage timestamps for {len(rows)} of {len(order_ids)} orders")
    return [h.median([float(row[i]) for row in rows]) for i in range(len(STAGES))]


def measure_latency(settings, load: StackLoad) -> tuple[dict, dict, dict]:
    """Per variant ("NOTIFY", "poll"): latencies in seconds, counts of final
    statuses, and the median seconds of each of STAGES."""
    runtime = SagaRuntime(settings)
    # One producer for every outboxer of the phase (one runs at a time), so
    # neither variant pays for a fresh producer's metadata round trip.
    producer = make_producer(settings.kafka_bootstrap)
    client = make_engine(settings, pool_size=2, max_overflow=0)
    latencies: dict[str, list[float]] = {"NOTIFY": [], "poll": []}
    outcomes: dict[str, dict[str, int]] = {"NOTIFY": {}, "poll": {}}
    order_ids: dict[str, list[uuid.UUID]] = {"NOTIFY": [], "poll": []}
    amount = 10_000
    try:
        with client.connect().execution_options(isolation_level="AUTOCOMMIT") as status_db:
            runtime.add_payments_consumer()
            runtime.add_orders_consumer()
            outboxer = start_outboxer(runtime, producer, True, client)
            # The first orders settle only once both consumers have joined
            # their groups (~3 s each on Tansu).
            joined = time.perf_counter()
            runtime.wait_settled([create_order(client, amount + i) for i in range(WARMUP_ORDERS)], timeout=60)
            print(f"consumers joined and warm-up orders settled in {time.perf_counter() - joined:.1f}s", flush=True)

            load.start()
            for _ in range(LATENCY_ROUNDS):
                for variant, count, pause in (
                    ("NOTIFY", NOTIFY_ORDERS_PER_ROUND, NOTIFY_PAUSE_SECONDS),
                    ("poll", POLL_ORDERS_PER_ROUND, POLL_PAUSE_SECONDS),
                ):
                    stop_worker(outboxer)
                    outboxer = start_outboxer(runtime, producer, variant == "NOTIFY", client)
                    for _ in range(count):
                        time.sleep(random.uniform(*pause))
                        amount += 1
                        order_id, seconds, status = order_latency(client, status_db, amount)
                        order_ids[variant].append(order_id)
                        latencies[variant].append(seconds)
                        outcomes[variant][status] = outcomes[variant].get(status, 0) + 1
            print(load.summary("phase 1"), flush=True)
        stages = {variant: stage_medians(client, ids) for variant, ids in order_ids.items()}
    finally:
        try:
            runtime.stop()
        finally:
            for consumer in runtime.payments + runtime.orders:
                consumer.engine.dispose()
            producer.close(timeout=5)
            client.dispose()
    return latencies, outcomes, stages


# --- phase 2: relay throughput ----------------------------------------------


def insert_outbox_rows(engine: sa.Engine, count: int) -> list[dict]:
    """``count`` order.created-like rows with unique keys, in one transaction."""
    events = []
    with engine.begin() as connection:
        for i in range(count):
            order_id = uuid.uuid4()
            body = add_event(
                connection,
                OUTBOX,
                ORDER_CREATED,
                occurred_at=now(),
                order_id=order_id,
                user_id=uuid.uuid4(),
                amount_cents=10_000 + i,
                currency="RUB",
                status="new",
            )
            order_id = str(order_id)
            events.append({"key": order_id, "body": body})
    return events


def run_relay(relay: Relay, expected: int) -> tuple[float, float]:
    """(seconds, CPU seconds of this process) to relay every pending row."""
    published_before = relay.stats.published
    wall, cpu = time.perf_counter(), cpu_seconds()
    while relay.relay_once():
        pass
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    published = relay.stats.published - published_before
    if published != expected or relay.stats.failed:
        raise RuntimeError(f"relay published {published} of {expected}, {relay.stats.failed} failed")
    return wall, cpu


def run_direct(producer, events: list[dict]) -> tuple[float, float]:
    """(seconds, CPU seconds) to produce the same payloads straight to Kafka,
    encoded and with the headers the relay gives them."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    futures = [
        producer.send(
            ORDERS_TOPIC,
            key=event["key"].encode(),
            value=json.dumps(event["body"], separators=(",", ":")).encode(),
            headers=event_headers(event["body"]["event"], event["body"]["event_id"]),
        )
        for event in events
    ]
    producer.flush(timeout=30)
    for future in futures:
        future.get(timeout=0)
    return time.perf_counter() - wall, cpu_seconds() - cpu


def measure_relay(settings, load: StackLoad) -> dict[str, list[tuple[float, float]]]:
    engine = make_engine(settings, pool_size=2, max_overflow=0)
    producer = make_producer(settings.kafka_bootstrap)
    results: dict[str, list[tuple[float, float]]] = {"relay": [], "direct": []}
    try:
        relay = Relay(
            engine,
            OUTBOX,
            producer,
            batch_size=RELAY_BATCH_SIZE,
            backoff_base_ms=500,
            backoff_cap_seconds=60,
        )
        warmup = insert_outbox_rows(engine, RELAY_WARMUP_ROWS)
        run_relay(relay, RELAY_WARMUP_ROWS)
        run_direct(producer, warmup)
        load.start()
        insert_seconds = []
        for round_number in range(RELAY_ROUNDS):
            started = time.perf_counter()
            events = insert_outbox_rows(engine, RELAY_ROWS)
            insert_seconds.append(time.perf_counter() - started)
            # Alternate which goes first, so neither always runs on a warmer box.
            if round_number % 2 == 0:
                results["relay"].append(run_relay(relay, RELAY_ROWS))
                results["direct"].append(run_direct(producer, events))
            else:
                results["direct"].append(run_direct(producer, events))
                results["relay"].append(run_relay(relay, RELAY_ROWS))
        print(load.summary("phase 2 (inserts included)"), flush=True)
        print(
            f"(inserting {RELAY_ROWS} outbox rows in one transaction took {h.median(insert_seconds):.2f}s "
            "median; not part of either figure)",
            flush=True,
        )
    finally:
        producer.close(timeout=5)
        engine.dispose()
    return results


# --- main ---------------------------------------------------------------------


def main() -> None:
    h.quiet_logging()
    started = time.perf_counter()
    print(h.background_load(), flush=True)
    with infrastructure() as (postgres, broker, scratch):
        load = StackLoad(postgres, broker)
        h.quiet_logging()  # alembic's fileConfig may have reset the loggers
        settings = saga_settings(
            settings_of(
                {},
                environ={
                    "GOSHOP_ENV": "test",
                    "GOSHOP_DATABASE_URL": postgres.url,
                    "GOSHOP_DEV_DIR": scratch,
                    "GOSHOP_LOG_LEVEL": "WARNING",
                },
            ),
            broker.bootstrap,
        )
        print(f"Postgres (fsync off) and Tansu up, migrated: {time.perf_counter() - started:.1f}s", flush=True)
        print(
            f"phase 1: {LATENCY_ROUNDS} interleaved rounds x ({NOTIFY_ORDERS_PER_ROUND} orders with the NOTIFY "
            f"outboxer + {POLL_ORDERS_PER_ROUND} with the poll-only one, poll {settings.outbox_poll_seconds}s); "
            f"consumers fetch_max_wait_ms={CONSUMER_DEFAULTS['fetch_max_wait_ms']}",
            flush=True,
        )
        latencies, outcomes, stages = measure_latency(settings, load)
        print(
            f"phase 2: {RELAY_ROUNDS} interleaved rounds x {RELAY_ROWS} rows, relay batch {RELAY_BATCH_SIZE}; "
            "consumers stopped; goshop loggers at WARNING (the relay's per-row INFO line is not formatted)",
            flush=True,
        )
        relay_results = measure_relay(settings, load)

    print()
    for variant, values in latencies.items():
        statuses = ", ".join(f"{name} {count}" for name, count in sorted(outcomes[variant].items()))
        print(
            f"{variant} outboxer: {len(values)} orders ({statuses}); order -> final state "
            f"min {min(values) * 1000:.0f} ms, p50 {percentile(values, 0.5) * 1000:.0f} ms, "
            f"p95 {percentile(values, 0.95) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms",
            flush=True,
        )
        breakdown = "; ".join(
            f"{stage} {seconds * 1000:.0f}" for stage, seconds in zip(STAGES, stages[variant], strict=True)
        )
        print(f"  stage medians, ms: {breakdown}", flush=True)
    for name, runs in relay_results.items():
        per_round = ", ".join(f"{RELAY_ROWS / seconds:.0f}" for seconds, _ in runs)
        print(f"{name}: {RELAY_ROWS} msgs per round; msgs/s per round [{per_round}]", flush=True)
    print()
    notify, poll = latencies["NOTIFY"], latencies["poll"]
    for label, fraction in (("p50", 0.5), ("p95", 0.95)):
        h.report(
            f"order -> final state {label} (outboxer LISTEN/NOTIFY)",
            percentile(notify, fraction) * 1000,
            "ms",
            "poll-only outboxer (1 s)",
            percentile(poll, fraction) * 1000,
        )
    relay_rate = h.median([RELAY_ROWS / seconds for seconds, _ in relay_results["relay"]])
    direct_rate = h.median([RELAY_ROWS / seconds for seconds, _ in relay_results["direct"]])
    h.report("outbox relay throughput", relay_rate, "rows/s", "direct produce", direct_rate)
    relay_cpu = h.median([cpu / RELAY_ROWS * 1e6 for _, cpu in relay_results["relay"]])
    direct_cpu = h.median([cpu / RELAY_ROWS * 1e6 for _, cpu in relay_results["direct"]])
    h.report("outbox relay CPU/row (this process)", relay_cpu, "us", "direct produce", direct_cpu)
    print(f"\ntotal wall time {time.perf_counter() - started:.1f}s", flush=True)


if __name__ == "__main__":
    main()
