"""How the cost of each operation grows with the data: the shop as ``make run``
starts it, on a database grown in stages to a year's volume, each operation's
latency and CPU at every stage against its figure at the first.

    .venv/bin/python bench/bench_scale.py                     # 10 k, 1 M, 10 M orders (~15 min)
    .venv/bin/python bench/bench_scale.py --quick             # 10 k, 100 k orders, few samples (~3 min)
    .venv/bin/python bench/bench_scale.py --stages 10000,300000 --keep

The shop is bench_shop's (``goshop_devtools.run`` with a private data
directory, free ports, ``--no-reload``), in a scratch directory of its own,
removed at the end unless ``--keep``.

Seeding is generated SQL (``INSERT ... SELECT ... FROM generate_series``) as
the database's administrator, written to the migrations' schemas; triggers are
off while it runs (``session_replication_role = replica``), as the NOTIFYs of
rows written over a year are long past. A stage of N orders holds:

* N / 10 users (at least 1,000), every one with the same precomputed argon2
  hash of one password (goshop_users' hasher, the shop's parameters), and one
  session each, started in the last 30 days for 30 days (about half ended,
  inside the sessions' retention);
* N orders over those users, created uniformly over the last 365 days: 90 %
  paid (payment confirmed), 7 % cancelled for a declined payment (payment
  failed), 3 % cancelled by the payment timeout (payment refunded); one
  payment per order; plus the 10,000 orders of one user, over the same year;
* what retention keeps of the rest at that volume: published outbox rows
  (orders' order.created, payments' decision) for the orders of the last
  7 days (GOSHOP_RETENTION_OUTBOX_SECONDS), inbox rows (each side's
  consumption of the other's event) for the last 30 days
  (GOSHOP_RETENTION_INBOX_SECONDS), idempotency keys for the last 24 hours;
  the event ids of an order's outbox and inbox rows match, as the timeline
  joins them.

Stages grow the same database; after each seed VACUUM (ANALYZE) the seeded
tables, as autovacuum would eventually. Then, per operation, p50 and p99 of
the wall time and CPU per operation, split into the serving processes and
PostgreSQL:

* HTTP, on one keep-alive connection, one request at a time: login,
  ``/v1/users/me`` and refresh straight to users, one order and the first and
  a deep page (past 9,000 of 10,000) of ``GET /v1/orders`` of the 10,000-order
  user straight to orders, the ops timeline of a recent order straight to ops,
  ``POST /v1/checkout`` through the gateway timed until the saga has settled
  the order (its status polled in ``orders.orders``). CPU: every process of
  the shop over the batch, PostgreSQL backends credited to the process at the
  other end of their connection (bench_shop's Meter); this script's own
  connection left out.
* In this process, through their real code, each on an engine as its process
  makes it (role and server settings): the relay's claim (goshop_outboxer.
  relay, RELAY_SERVER_SETTINGS, rolled back) with a million published rows
  (100,000 with --quick) not yet vacuumed in ``orders.outbox``, published
  10,000 at a time with a claim after each, as the relay leaves them (autovacuum off on
  it meanwhile, as tests/integration/goshop_outboxer/test_claim_plan.py
  does); one retention pass (goshop_maintenance's rules) that finds 1,000
  just-expired rows in each of its seven tables; one payment-timeout sweep
  (goshop_orders.sweeper) that finds 100 overdue orders. CPU: this thread
  plus its PostgreSQL backend (/proc/PID/stat).

The table at the end gives each figure at every stage and the ratio of the
last stage to the first (the baseline, measured in the same run), marked
where it is over 1.5.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import queue
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(ROOT))

import _harness as h  # noqa: E402
import bench_shop as bs  # noqa: E402

SCRATCH_PREFIX = "goshop-bench-scale-"
PASSWORD = "bench scale password"  # noqa: S105 (every seeded account, in a throwaway database)
HEAVY_USER_ORDERS = 10_000
DEEP_POSITION = 9_000
PAGE = 20
EXPIRED_PER_TABLE = 1_000
# The relay's claims see published rows this many at a time.
PUBLISH_BATCH = 10_000
OVERDUE_PER_SWEEP = 100
SEED_CHUNK = 500_000
OVER = 1.5
# Reads no data: its ratio between stages is the machine's drift (a shared VM's
# speed changes over minutes), against which the others' ratios are read.
REFERENCE = "users GET /live (reads no data)"
DAY = 24 * 3600


@dataclasses.dataclass(frozen=True)
class Samples:
    login: int
    http: int
    checkout: int
    timeline: int
    claim: int
    retention: int
    sweep: int
    # Published outbox rows not yet vacuumed when the relay claims, at every stage.
    unvacuumed: int


FULL = Samples(login=40, http=300, checkout=100, timeline=100, claim=50, retention=5, sweep=10, unvacuumed=1_000_000)
QUICK = Samples(login=10, http=50, checkout=20, timeline=30, claim=20, retention=3, sweep=5, unvacuumed=100_000)


@dataclasses.dataclass
class Figure:
    """One operation at one stage."""

    latencies: list[float]
    server_cpu: float  # seconds per operation
    pg_cpu: float
    note: str = ""

    @property
    def p50_ms(self) -> float:
        return bs.percentile(self.latencies, 0.5) * 1000

    @property
    def p99_ms(self) -> float:
        return bs.percentile(self.latencies, 0.99) * 1000

    @property
    def cpu_ms(self) -> float:
        return (self.server_cpu + self.pg_cpu) * 1000


# --- seeding --------------------------------------------------------------------

# The user with index k has this id; k = 0 is the 10,000-order user.
USER_ID = "md5('goshop-user-' || {k})::uuid"
# Event ids derived from the order: an order's outbox row and the other side's
# inbox row carry the same one, as the relay and the consumer would write them.
ORDER_CREATED_ID = "md5('order.created-' || o.id)::uuid"
DECISION_ID = "md5('payment.decided-' || o.id)::uuid"

SEED_USERS = f"""
INSERT INTO users.users (id, email, password_hash, created_at)
SELECT {USER_ID.format(k="k")}, 'seed-' || k || '@example.com', %(hash)s, now() - random() * interval '365 days'
FROM generate_series(%(lo)s, %(hi)s) AS k
"""

SEED_SESSIONS = f"""
INSERT INTO users.sessions (id, user_id, current_jti, created_at, expires_at, user_agent, client_address)
SELECT gen_random_uuid(), {USER_ID.format(k="k")}, gen_random_uuid(), started, started + interval '30 days',
       'Mozilla/5.0 (seed)', '203.0.113.' || (k %% 250)
FROM (SELECT k, now() - random() * interval '30 days' AS started FROM generate_series(%(lo)s, %(hi)s) AS k) s
"""

# One statement per chunk: the orders, their payments, and what retention
# keeps of their events, from one materialised set of rows.
SEED_ORDERS = f"""
WITH o AS MATERIALIZED (
    SELECT gen_random_uuid() AS id,
           CASE WHEN %(heavy)s THEN {USER_ID.format(k="0")}
                ELSE {USER_ID.format(k="1 + (i::bigint * 7919) %% %(users)s")} END AS user_id,
           (100 + (i * 37) %% 50000)::bigint AS amount_cents,
           now() - random() * interval '365 days' AS created_at,
           random() AS fate
    FROM generate_series(%(lo)s, %(hi)s) AS i
), d AS MATERIALIZED (
    SELECT o.*,
           CASE WHEN fate < 0.90 THEN 'paid' ELSE 'cancelled' END AS status,
           CASE WHEN fate < 0.90 THEN NULL WHEN fate < 0.97 THEN 'card_declined' ELSE 'payment_timeout' END AS reason,
           CASE WHEN fate < 0.90 THEN 'confirmed' WHEN fate < 0.97 THEN 'failed' ELSE 'refunded' END AS payment,
           CASE WHEN fate < 0.90 OR fate >= 0.97 THEN 'payment.confirmed' ELSE 'payment.failed' END AS decision
    FROM o
), orders AS (
    INSERT INTO orders.orders (id, user_id, amount_cents, currency, status, reason, created_at, updated_at)
    SELECT id, user_id, amount_cents, 'RUB', status, reason, created_at,
           created_at + CASE WHEN reason = 'payment_timeout' THEN interval '15 minutes' ELSE interval '200 ms' END
    FROM d
), payments AS (
    INSERT INTO payments.payments (id, order_id, user_id, amount_cents, currency, status, reason, created_at,
                                   refunded_at)
    SELECT gen_random_uuid(), id, user_id, amount_cents, 'RUB', payment,
           CASE WHEN payment = 'confirmed' THEN NULL ELSE reason END, created_at + interval '100 ms',
           CASE WHEN payment = 'refunded' THEN created_at + interval '15 minutes' END
    FROM d
), orders_outbox AS (
    INSERT INTO orders.outbox (event_id, topic, key, event_type, payload, request_id, created_at, published_at,
                               next_attempt_at)
    SELECT {ORDER_CREATED_ID}, 'orders.events', o.id::text, 'order.created',
           jsonb_build_object('event_id', {ORDER_CREATED_ID}, 'event', 'order.created', 'version', 1,
                              'occurred_at', o.created_at, 'order_id', o.id, 'user_id', o.user_id,
                              'amount_cents', o.amount_cents, 'currency', 'RUB', 'status', 'new'),
           md5(o.id::text), o.created_at, o.created_at + interval '20 ms', o.created_at
    FROM d AS o WHERE o.created_at > now() - make_interval(secs => %(outbox_keep)s)
), payments_outbox AS (
    INSERT INTO payments.outbox (event_id, topic, key, event_type, payload, created_at, published_at,
                                 next_attempt_at)
    SELECT {DECISION_ID}, 'payments.events', o.id::text, o.decision,
           jsonb_build_object('event_id', {DECISION_ID}, 'event', o.decision, 'version', 1,
                              'occurred_at', o.created_at + interval '100 ms', 'order_id', o.id,
                              'user_id', o.user_id, 'amount_cents', o.amount_cents, 'currency', 'RUB',
                              'status', o.payment, 'reason', o.reason),
           o.created_at + interval '100 ms', o.created_at + interval '120 ms', o.created_at
    FROM d AS o WHERE o.created_at > now() - make_interval(secs => %(outbox_keep)s)
), payments_inbox AS (
    INSERT INTO payments.inbox (event_id, event_type, topic, partition, "offset", received_at)
    SELECT {ORDER_CREATED_ID}, 'order.created', 'orders.events', abs(hashtext(o.id::text)) %% 3,
           %(lo)s + row_number() OVER (), o.created_at + interval '50 ms'
    FROM d AS o WHERE o.created_at > now() - make_interval(secs => %(inbox_keep)s)
), orders_inbox AS (
    INSERT INTO orders.inbox (event_id, event_type, topic, partition, "offset", received_at)
    SELECT {DECISION_ID}, o.decision, 'payments.events', abs(hashtext(o.id::text)) %% 3,
           %(lo)s + row_number() OVER (), o.created_at + interval '150 ms'
    FROM d AS o WHERE o.created_at > now() - make_interval(secs => %(inbox_keep)s)
)
INSERT INTO orders.idempotency_keys (user_id, key, request_hash, response_status, response_body, created_at)
SELECT o.user_id, o.id::text, md5(o.id::text), 201,
       jsonb_build_object('id', o.id, 'status', 'new', 'amount_cents', o.amount_cents, 'currency', 'RUB'),
       o.created_at
FROM d AS o WHERE o.created_at > now() - make_interval(secs => %(idempotency_keep)s)
"""

SEEDED_TABLES = (
    "users.users",
    "users.sessions",
    "orders.orders",
    "orders.outbox",
    "orders.inbox",
    "orders.idempotency_keys",
    "payments.payments",
    "payments.outbox",
    "payments.inbox",
)


def seed(db, statement: str, values: dict | None = None) -> None:
    """``statement`` as the administrator with triggers off: the NOTIFYs of
    rows written over a year are long past."""
    with db.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(statement, values)
        finally:
            cursor.execute("RESET session_replication_role")


def precomputed_hash() -> str:
    """PASSWORD hashed once by goshop_users' hasher with the shop's
    parameters (so that login neither fails nor rehashes it)."""
    from goshop_devtools.settings import settings_of
    from goshop_users.passwords import Passwords

    settings = settings_of(environ={}, service="users")
    return Passwords(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism).hash(PASSWORD)


class Seeder:
    """Grows the shop's database, stage by stage, as its administrator."""

    def __init__(self, db, password_hash: str, connect: Callable[[], object]):
        """``connect()``: a new autocommit connection as the administrator,
        one per core, on which the chunks of a stage are seeded side by side."""
        from goshop_devtools.settings import settings_of

        self.db = db
        self.hash = password_hash
        self.orders = 0
        self.users = 0
        self.workers = [connect() for _ in range(os.cpu_count() or 1)]
        self.backends = [self.db, *self.workers]
        maintenance = settings_of(environ={}, service="maintenance")
        self.keep = {
            "outbox_keep": maintenance.retention_outbox,
            "inbox_keep": maintenance.retention_inbox,
            "idempotency_keep": maintenance.idempotency_key_ttl,
        }

    def close(self) -> None:
        for connection in self.workers:
            connection.close()

    def execute(self, statement: str, values: dict | None = None) -> None:
        seed(self.db, statement, values)

    def side_by_side(self, jobs: list[tuple[str, str, dict | None]], began: float) -> None:
        """Each (what, statement, values) on the first free worker connection; says when each is done."""
        free: queue.Queue = queue.Queue()
        for connection in self.workers:
            free.put(connection)

        def run(job: tuple[str, str, dict | None]) -> str:
            what, statement, values = job
            connection = free.get()
            try:
                seed(connection, statement, values)
            finally:
                free.put(connection)
            return what

        with concurrent.futures.ThreadPoolExecutor(len(self.workers)) as pool:
            for what in pool.map(run, jobs):
                print(f"    {what} ({time.monotonic() - began:.0f} s)", flush=True)

    def backend_cpu(self) -> float:
        """CPU seconds of the seeding connections' backends."""
        total = 0.0
        for connection in self.backends:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                total += bs.process_cpu(cursor.fetchone()[0])
        return total

    def grow_to(self, orders: int) -> float:
        """Seed up to ``orders`` orders (and the rest a stage holds); the seconds it took."""
        began = time.monotonic()
        cpu = self.backend_cpu()
        users = max(1000, orders // 10)
        if self.users == 0:
            self.execute(SEED_USERS, {"hash": self.hash, "lo": 0, "hi": 0})
            self.execute(SEED_SESSIONS, {"lo": 0, "hi": 0})
            self._orders(1, HEAVY_USER_ORDERS, heavy=True)
        if users > self.users:
            self.execute(SEED_USERS, {"hash": self.hash, "lo": self.users + 1, "hi": users})
            self.execute(SEED_SESSIONS, {"lo": self.users + 1, "hi": users})
            self.users = users
        # Background orders are numbered after the heavy user's.
        jobs = []
        for lo in range(self.orders + 1, orders + 1, SEED_CHUNK):
            hi = min(orders, lo + SEED_CHUNK - 1)
            values = self._values(HEAVY_USER_ORDERS + lo, HEAVY_USER_ORDERS + hi, heavy=False)
            jobs.append((f"seeded orders {lo:,}-{hi:,}", SEED_ORDERS, values))
        self.side_by_side(jobs, began)
        self.orders = orders
        seeded = time.monotonic() - began
        self.side_by_side(
            [(f"VACUUM (ANALYZE) {table}", f"VACUUM (ANALYZE) {table}", None) for table in SEEDED_TABLES], began
        )
        # The seed's dirty pages written out now, not by the checkpointer while
        # the operations are measured (their commits would wait on its writes).
        self.execute("CHECKPOINT")
        print(
            f"    seed {seeded:.0f} s, with VACUUM (ANALYZE) and CHECKPOINT {time.monotonic() - began:.0f} s "
            f"(the seeding backends' CPU {self.backend_cpu() - cpu:.0f} s); {self.sizes()}",
            flush=True,
        )
        return time.monotonic() - began

    def _orders(self, lo: int, hi: int, *, heavy: bool) -> None:
        self.execute(SEED_ORDERS, self._values(lo, hi, heavy=heavy))

    def _values(self, lo: int, hi: int, *, heavy: bool) -> dict:
        return {"lo": lo, "hi": hi, "heavy": heavy, "users": max(self.users, 1), **self.keep}

    def sizes(self) -> str:
        with self.db.cursor() as cursor:
            cursor.execute(
                "SELECT c.oid::regclass::text, c.reltuples::bigint, pg_total_relation_size(c.oid) "
                "FROM pg_class c WHERE c.oid = ANY(%s::regclass[])",
                (list(SEEDED_TABLES),),
            )
            rows = {name: (count, size) for name, count, size in cursor.fetchall()}
        return ", ".join(
            f"{name} {rows[name][0]:,} ({rows[name][1] / 2**20:.0f} MiB)" for name in SEEDED_TABLES if name in rows
        )


# --- measuring ------------------------------------------------------------------


def split_cpu(delta: bs.CpuDelta) -> tuple[float, float]:
    """(the shop's processes, PostgreSQL) CPU seconds of a reading, this script's connection left out."""
    server = pg = 0.0
    for group, seconds in delta.by_group.items():
        if group == bs.ShopCpu.EXCLUDED:
            continue
        if group.startswith("postgres"):
            pg += seconds
        else:
            server += seconds
    return server, pg


def over_http(meter: bs.Meter, count: int, request: Callable[[int], None], warmup: int = 3) -> Figure:
    """``request(i)`` ``count`` times one after the other, after ``warmup`` uncounted ones."""
    for index in range(warmup):
        request(index)
    latencies = []
    stop = meter.start()
    for index in range(count):
        began = time.perf_counter()
        request(index)
        latencies.append(time.perf_counter() - began)
    server, pg = split_cpu(stop().shop)
    return Figure(latencies, server / count, pg / count)


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def in_process(
    engine, count: int, operation: Callable[[], object], prepare: Callable[[], None] | None = None
) -> Figure:
    """``operation()`` ``count`` times on ``engine`` (a pool of one connection),
    each after an untimed ``prepare()``; CPU of this thread and of the
    engine's backend during the operations only."""
    pid = backend_pid(engine)
    latencies, own, pg = [], 0.0, 0.0
    for _ in range(count):
        if prepare is not None:
            prepare()
        own_before, pg_before = thread_cpu(), bs.process_cpu(pid)
        began = time.perf_counter()
        operation()
        latencies.append(time.perf_counter() - began)
        own += thread_cpu() - own_before
        pg += bs.process_cpu(pid) - pg_before
    if backend_pid(engine) != pid:
        raise bs.BenchError("the engine changed connections during the measurement")
    return Figure(latencies, own / count, pg / count)


class Checked:
    """A keep-alive client whose every answer must have the expected status."""

    def __init__(self, port: int):
        self.client = bs.Client(port)

    def __call__(self, method: str, path: str, expect: int, body=None, token: str | None = None) -> dict:
        status, answer = self.client.call(method, path, body, token=token)
        if status != expect:
            raise bs.BenchError(f"{method} {path}: {status} {answer}")
        return answer

    def call_with(self, method: str, path: str, headers: dict[str, str]) -> dict:
        connection = self.client.connection
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        if response.status != 200:
            raise bs.BenchError(f"{method} {path}: {response.status} {raw[:200]!r}")
        return json.loads(raw)

    def close(self) -> None:
        self.client.close()


class Stage:
    """Every operation's figure at one size of the database."""

    def __init__(self, shop: bs.Shop, db, meter: bs.Meter, samples: Samples, orders: int):
        self.shop, self.db, self.meter, self.samples, self.orders = shop, db, meter, samples, orders
        self.users = Checked(shop.port("users"))
        self.orders_api = Checked(shop.port("orders"))
        self.ops = Checked(shop.port("ops"))
        self.gateway = Checked(shop.port("gateway"))

    def close(self) -> None:
        for client in (self.users, self.orders_api, self.ops, self.gateway):
            client.close()

    def query(self, statement: str, values=None) -> list[tuple]:
        with self.db.cursor() as cursor:
            cursor.execute(statement, values)
            return cursor.fetchall()

    def login(self, email: str) -> dict:
        return self.users("POST", "/v1/users/login", 200, {"email": email, "password": PASSWORD})

    def measure(self) -> dict[str, Figure]:
        figures: dict[str, Figure] = {}
        samples = self.samples
        someone = f"seed-{1 + self.orders // 20}@example.com"
        heavy = "seed-0@example.com"

        def each(name: str, figure: Figure) -> None:
            figures[name] = figure
            print(
                f"    {name:<34} p50 {figure.p50_ms:8.2f} ms  p99 {figure.p99_ms:8.2f} ms  CPU {figure.cpu_ms:7.2f} ms "
                f"(server {figure.server_cpu * 1000:.2f}, PostgreSQL {figure.pg_cpu * 1000:.2f}){figure.note}",
                flush=True,
            )

        each(REFERENCE, over_http(self.meter, samples.http, lambda _i: self.users("GET", "/live", 200)))
        each("users POST /v1/users/login", over_http(self.meter, samples.login, lambda _i: self.login(someone), 1))
        tokens = self.login(someone)
        access = tokens["access_token"]
        each(
            "users GET /v1/users/me",
            over_http(self.meter, samples.http, lambda _i: self.users("GET", "/v1/users/me", 200, token=access)),
        )
        refresh = [tokens["refresh_token"]]

        def rotate(_index: int) -> None:
            answer = self.users("POST", "/v1/users/refresh", 200, {"refresh_token": refresh[0]})
            refresh[0] = answer["refresh_token"]

        each("users POST /v1/users/refresh", over_http(self.meter, samples.http, rotate))
        each("gateway POST /v1/checkout, settled", self.checkout(access))

        heavy_token = self.login(heavy)["access_token"]
        [[heavy_id]] = self.query(f"SELECT {USER_ID.format(k='0')}")
        mine = [str(row[0]) for row in self.query("SELECT id FROM orders.orders WHERE user_id = %s", (heavy_id,))]
        random.shuffle(mine)
        each(
            "orders GET /v1/orders/{id}",
            over_http(
                self.meter,
                samples.http,
                lambda i: self.orders_api("GET", f"/v1/orders/{mine[i % len(mine)]}", 200, token=heavy_token),
            ),
        )
        first = f"/v1/orders?limit={PAGE}"
        each(
            "orders GET /v1/orders, first page",
            over_http(self.meter, samples.http, lambda _i: self.orders_api("GET", first, 200, token=heavy_token)),
        )
        deep = f"/v1/orders?limit={PAGE}&cursor={self.cursor_at(heavy_id, DEEP_POSITION)}"
        each(
            f"orders GET /v1/orders, past {DEEP_POSITION:,}",
            over_http(self.meter, samples.http, lambda _i: self.orders_api("GET", deep, 200, token=heavy_token)),
        )
        # Orders of the last 7 days, seeded or checked out here: their events are still in the outboxes.
        recent = [
            row[0]
            for row in self.query(
                "SELECT key FROM orders.outbox WHERE event_type = 'order.created' AND published_at IS NOT NULL "
                "ORDER BY random() LIMIT %s",
                (samples.timeline + 3,),
            )
        ]
        each("ops GET .../timeline", self.timeline(recent))
        each("relay claim (orders.outbox)", self.claim())
        each("retention pass (7 tables)", self.retention_pass())
        each(f"payment-timeout sweep ({OVERDUE_PER_SWEEP})", self.sweep())
        return figures

    def cursor_at(self, user_id, position: int) -> str:
        from goshop_orders.orders import encode_cursor

        [row] = self.query(
            "SELECT id, created_at FROM orders.orders WHERE user_id = %s ORDER BY created_at DESC, id DESC "
            "OFFSET %s LIMIT 1",
            (user_id, position - 1),
        )
        return encode_cursor(_Position(uuid.UUID(str(row[0])), row[1]))

    def checkout(self, token: str) -> Figure:
        """POST /v1/checkout through the gateway, timed until the order is
        paid or cancelled; CPU: the whole shop, per settled order."""

        def order(_index: int) -> None:
            began = time.perf_counter()
            answer = self.gateway("POST", "/v1/checkout", 201, bs.ORDER_BODY, token=token)
            while True:
                [[status]] = self.query("SELECT status FROM orders.orders WHERE id = %s", (answer["id"],))
                if status in bs.FINAL:
                    return
                if time.perf_counter() - began > bs.ORDER_TIMEOUT:
                    raise bs.BenchError(f"order {answer['id']} not settled after {bs.ORDER_TIMEOUT:.0f} s")
                time.sleep(bs.STATUS_POLL_SECONDS)

        return over_http(self.meter, self.samples.checkout, order)

    def timeline(self, order_ids: list[str]) -> Figure:
        from goshop_common.settings import DEV_OPS_TOKEN

        headers = {"Authorization": f"Bearer {DEV_OPS_TOKEN}"}

        def one(index: int) -> None:
            answer = self.ops.call_with("GET", f"/v1/ops/orders/{order_ids[index % len(order_ids)]}/timeline", headers)
            if len(answer["entries"]) < 4:
                raise bs.BenchError(f"a seeded order's timeline is short: {answer['entries']}")

        return over_http(self.meter, self.samples.timeline, one)

    def engine(self, process: str, role: str, **options):
        from goshop_common.db.roles import url_as
        from goshop_common.db.session import make_engine
        from goshop_common.settings import DEV_DATABASE_PASSWORD
        from goshop_devtools.settings import settings_of

        url = url_as(self.shop.database_url, role, DEV_DATABASE_PASSWORD)
        settings = settings_of(environ={"GOSHOP_DATABASE_URL": url}, service=process)
        return settings, make_engine(settings, pool_size=1, max_overflow=0, **options)

    def claim(self) -> Figure:
        """The relay's claim on the outboxer's connection settings, with
        ``unvacuumed`` published rows not yet vacuumed, published as the relay
        publishes them: PUBLISH_BATCH at a time, a claim after each (which
        marks the batch's index entries dead, as the relay's next claim would)."""
        from goshop_common.clock import utcnow
        from goshop_common.db.roles import OUTBOXER
        from goshop_orders.models import OUTBOX
        from goshop_outboxer.__main__ import RELAY_SERVER_SETTINGS
        from goshop_outboxer.relay import Relay

        unvacuumed = self.samples.unvacuumed
        settings, engine = self.engine("outboxer", OUTBOXER, server_settings=RELAY_SERVER_SETTINGS)
        relay = Relay(
            engine,
            OUTBOX,
            None,
            settings.outbox_batch_size,
            settings.outbox_backoff_base_ms,
            settings.outbox_backoff_cap_seconds,
        )

        def claim_once() -> None:
            with engine.connect() as connection:
                relay._claim(connection, utcnow())
                connection.rollback()

        with self.db.cursor() as cursor:
            cursor.execute("ALTER TABLE orders.outbox SET (autovacuum_enabled = false)")
        try:
            began = time.monotonic()
            for published in range(0, unvacuumed, PUBLISH_BATCH):
                # Queued, then published: each row leaves an entry in the
                # pending-row indexes, as a row the relay marks does.
                [[last]] = self.query("SELECT coalesce(max(id), 0) FROM orders.outbox")
                seed(
                    self.db,
                    "INSERT INTO orders.outbox (event_id, topic, key, event_type, payload) "
                    "SELECT gen_random_uuid(), 'orders.events', gen_random_uuid()::text, 'order.created', "
                    "jsonb_build_object('pad', repeat('x', 300)) FROM generate_series(1, %(n)s)",
                    {"n": min(PUBLISH_BATCH, unvacuumed - published)},
                )
                seed(
                    self.db,
                    "UPDATE orders.outbox SET published_at = now() WHERE id > %(last)s AND payload ? 'pad'",
                    {"last": last},
                )
                claim_once()
            print(f"    ({unvacuumed:,} rows published in {time.monotonic() - began:.0f} s)", flush=True)
            figure = in_process(engine, self.samples.claim, claim_once)
            figure.note = f"; {unvacuumed:,} rows published since the last VACUUM"
            return figure
        finally:
            engine.dispose()
            with self.db.cursor() as cursor:
                cursor.execute("DELETE FROM orders.outbox WHERE payload ? 'pad'")
                cursor.execute("ALTER TABLE orders.outbox RESET (autovacuum_enabled)")
                # FULL: the next stages measure the outbox the seed makes, not
                # the pages this measurement's million rows left empty.
                cursor.execute("VACUUM (FULL, ANALYZE) orders.outbox")

    def retention_pass(self) -> Figure:
        """One pass of every rule, each table holding EXPIRED_PER_TABLE rows
        that expired a minute ago (aged just inside the horizon for the
        shop's own worker, past it for this pass's clock)."""
        from goshop_common.clock import utcnow
        from goshop_common.db.retention import delete_expired
        from goshop_common.db.roles import MAINTENANCE
        from goshop_maintenance.__main__ import build

        settings, engine = self.engine("maintenance", MAINTENANCE)
        ahead = dt.timedelta(seconds=60)
        maintenance = build(settings, engine, clock=lambda: utcnow() + ahead)
        ages = {
            "sessions": settings.retention_sessions,
            "failures": settings.login_failure_window,
            "keys": settings.idempotency_key_ttl,
            "outbox": settings.retention_outbox,
            "inbox": settings.retention_inbox,
        }
        expired = EXPIRED_PER_TABLE
        statements = [
            "INSERT INTO users.login_failures (key, failures, window_started_at) "
            "SELECT 'client:bench-' || gen_random_uuid(), 1, now() - make_interval(secs => %(failures)s - 30) "
            "FROM generate_series(1, %(n)s)",
            f"INSERT INTO users.sessions (id, user_id, current_jti, created_at, expires_at) "
            f"SELECT gen_random_uuid(), {USER_ID.format(k='0')}, gen_random_uuid(), now() - interval '60 days', "
            f"now() - make_interval(secs => %(sessions)s - 30) FROM generate_series(1, %(n)s)",
            "INSERT INTO orders.idempotency_keys (user_id, key, request_hash, response_status, response_body, "
            "created_at) SELECT gen_random_uuid(), 'k', 'h', 201, '{}', now() - make_interval(secs => %(keys)s - 30) "
            "FROM generate_series(1, %(n)s)",
        ]
        for schema in ("orders", "payments"):
            statements.append(
                f"INSERT INTO {schema}.outbox (event_id, topic, key, event_type, payload, created_at, published_at) "
                f"SELECT gen_random_uuid(), 'x', gen_random_uuid()::text, 'x', '{{}}', "
                f"now() - make_interval(secs => %(outbox)s), now() - make_interval(secs => %(outbox)s - 30) "
                f"FROM generate_series(1, %(n)s)"
            )
            statements.append(
                f'INSERT INTO {schema}.inbox (event_id, event_type, topic, partition, "offset", received_at) '
                f"SELECT gen_random_uuid(), 'x', 'x', 0, 0, now() - make_interval(secs => %(inbox)s - 30) "
                f"FROM generate_series(1, %(n)s)"
            )

        def prepare() -> None:
            for statement in statements:
                seed(self.db, statement, {"n": expired, **ages})

        def one_pass() -> None:
            if not maintenance.pass_once():
                raise bs.BenchError("a retention pass did not complete")

        try:
            figure = in_process(engine, self.samples.retention, one_pass, prepare)
            # Where a pass spends its time: one more, a rule at a time.
            prepare()
            now, by_rule = maintenance.clock(), []
            for rule in maintenance.rules:
                began = time.perf_counter()
                delete_expired(engine, rule, now, maintenance.batch_size)
                by_rule.append((time.perf_counter() - began, rule.name))
        finally:
            engine.dispose()
        [[left]] = self.query(
            "SELECT (SELECT count(*) FROM users.login_failures WHERE key LIKE 'client:bench-%%') + "
            "(SELECT count(*) FROM orders.idempotency_keys WHERE key = 'k') + "
            "(SELECT count(*) FROM orders.inbox WHERE topic = 'x') + "
            "(SELECT count(*) FROM payments.inbox WHERE topic = 'x')"
        )
        if left:
            raise bs.BenchError(f"{left} of the expired rows seeded for the retention passes are still there")
        slowest = ", ".join(f"{name} {seconds * 1000:.1f} ms" for seconds, name in sorted(by_rule, reverse=True)[:3])
        figure.note = f"; {expired:,} expired rows in each table, every one deleted; slowest: {slowest}"
        return figure

    def sweep(self) -> Figure:
        """One payment-timeout sweep finding OVERDUE_PER_SWEEP orders a minute
        old, on a 30 s timeout (the shop's own sweeper, at 15 minutes, leaves
        them)."""
        from goshop_common.clock import utcnow
        from goshop_common.db.roles import ORDERS
        from goshop_orders.sweeper import PaymentTimeouts

        _settings, engine = self.engine("orders", ORDERS)
        sweeper = PaymentTimeouts(engine, 30.0, utcnow)
        cancelled = []

        def prepare() -> None:
            with self.db.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO orders.orders (id, user_id, amount_cents, currency, status, created_at, updated_at) "
                    f"SELECT gen_random_uuid(), {USER_ID.format(k='1 + k')}, 19901, 'RUB', 'new', "
                    "now() - interval '60 seconds', now() - interval '60 seconds' FROM generate_series(1, %s) k",
                    (OVERDUE_PER_SWEEP,),
                )

        def one() -> None:
            cancelled.append(sweeper.sweep())

        try:
            figure = in_process(engine, self.samples.sweep, one, prepare)
        finally:
            engine.dispose()
        if any(count != OVERDUE_PER_SWEEP for count in cancelled):
            raise bs.BenchError(f"sweeps cancelled {cancelled}, expected {OVERDUE_PER_SWEEP} each")
        return figure


@dataclasses.dataclass(frozen=True)
class _Position:
    """Where a page starts, as encode_cursor reads an order."""

    id: uuid.UUID
    created_at: dt.datetime


# --- the table ------------------------------------------------------------------


def print_table(stages: list[int], results: dict[int, dict[str, Figure]]) -> list[str]:
    """The figures at every stage and the ratio of the last to the first
    (and the p50's divided by the reference's); the ops over OVER."""
    first, last = stages[0], stages[-1]
    names = list(results[first])
    label = "/".join(size_label(stage) for stage in stages)
    fields = ("p50_ms", "p99_ms", "cpu_ms")
    drift = results[last][REFERENCE].p50_ms / max(results[first][REFERENCE].p50_ms, 1e-9)
    print(
        f"\n{'operation':<36} {'p50 ms (' + label + ')':>30} {'p99 ms':>26} {'CPU ms/op':>26}   "
        f"ratio {size_label(last)}/{size_label(first)}: p50  p99  CPU  p50/reference's",
        flush=True,
    )
    over = []
    for name in names:
        row = [results[stage][name] for stage in stages]
        cells = [" / ".join(h._fmt(getattr(figure, field)) for figure in row) for field in fields]
        ratios = [getattr(row[-1], field) / max(getattr(row[0], field), 1e-9) for field in fields]
        mark = ""
        if name != REFERENCE and (ratios[0] > OVER or ratios[2] > OVER):
            mark = "  <-- over 1.5x"
            over.append(name)
        print(
            f"{name:<36} {cells[0]:>30} {cells[1]:>26} {cells[2]:>26}   "
            f"{ratios[0]:5.2f} {ratios[1]:5.2f} {ratios[2]:5.2f} {ratios[0] / drift:9.2f}{mark}",
            flush=True,
        )
    return over


def size_label(orders: int) -> str:
    if orders >= 1_000_000:
        return f"{orders / 1_000_000:g}M"
    if orders >= 1000:
        return f"{orders / 1000:g}k"
    return str(orders)


# --- main -----------------------------------------------------------------------


def run(stages: list[int], samples: Samples, keep: bool) -> int:
    import psycopg2

    started = time.monotonic()
    print(h.background_load(1.0), flush=True)
    bs.stop_leftovers(SCRATCH_PREFIX, "bench_scale")
    children = bs.Children()
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    (scratch / "bench.pid").write_text(str(os.getpid()))
    shop: bs.Shop | None = None
    db = None
    seeder: Seeder | None = None
    seen: set[int] = set()
    try:
        shop = bs.start_shop(children, scratch)
        seen = bs.collect_pids(shop, children)
        db = psycopg2.connect(shop.database_url)
        db.autocommit = True
        meter = bs.Meter(bs.ShopCpu(shop, db), [])

        def connect():
            connection = psycopg2.connect(shop.database_url)
            connection.autocommit = True
            return connection

        seeder = Seeder(db, precomputed_hash(), connect)
        results: dict[int, dict[str, Figure]] = {}
        for orders in stages:
            print(f"\n== {size_label(orders)} orders: seeding", flush=True)
            seeder.grow_to(orders)
            print(f"== {size_label(orders)} orders: measuring", flush=True)
            stage = Stage(shop, db, meter, samples, orders)
            try:
                results[orders] = stage.measure()
            finally:
                stage.close()
        over = print_table(stages, results)
        if over:
            print(f"over {OVER}x the first stage's: {', '.join(over)}", flush=True)
        print(f"\ntotal wall time {time.monotonic() - started:.0f} s", flush=True)
        return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if shop is not None:
            seen |= bs.collect_pids(shop, children)
        with contextlib.suppress(Exception):
            if seeder is not None:
                seeder.close()
            if db is not None:
                db.close()
        if shop is not None:
            bs.stop_shop(children, shop)
        children.stop_all()
        left = sorted(pid for pid in seen if bs.pid_alive(pid))
        if left:
            print(f"cleanup: WARNING: processes left running: {left}; scratch kept: {scratch}", flush=True)
        elif keep:
            print(f"cleanup: every process stopped; data directory kept: {scratch}", flush=True)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
            print(f"cleanup: every process stopped, {scratch} removed", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stages 10k and 100k, few samples (~3 min)")
    parser.add_argument("--stages", help="order counts, comma-separated (default 10000,1000000,10000000)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (its path is printed)")
    options = parser.parse_args(argv)
    default = "10000,100000" if options.quick else "10000,1000000,10000000"
    stages = [int(value) for value in (options.stages or default).replace("_", "").split(",")]
    if stages != sorted(set(stages)) or stages[0] <= 0:
        parser.error("--stages: increasing positive order counts")
    samples = QUICK if options.quick else FULL
    # The sweeps below log a warning per order they cancel, as the shop's sweeper does.
    h.quiet_logging()
    logging.getLogger("goshop.orders.sweeper").setLevel(logging.ERROR)
    print(f"bench_scale: stages {', '.join(size_label(s) for s in stages)} orders; {samples}", flush=True)
    return bs.run_stoppable(lambda: run(stages, samples, options.keep))


if __name__ == "__main__":
    sys.exit(main())
