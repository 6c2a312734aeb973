"""Retention's batched deletes (goshop_common.db.retention) against one DELETE
of the same rows.

    .venv/bin/python bench/bench_retention.py

The table is orders.inbox as the migrations make it (its retention index
included): EXPIRED rows past the horizon and as many inside it, analysed.
Figure: rows per second deleted in batches of BATCH (each its own
transaction, FOR UPDATE SKIP LOCKED), and the batches' p50 / max duration,
which is the longest any one row stays locked. Baseline: one
``DELETE ... WHERE received_at <= cutoff`` in one transaction, which holds
every deleted row's lock until it commits. Medians of ROUNDS rounds.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

from goshop_common.db.retention import delete_batch
from goshop_common.db.session import sqlalchemy_url
from goshop_common.messaging.inbox import retention_rule
from goshop_orders.models import INBOX

ROUNDS = 3
EXPIRED = 100_000
BATCH = 1000
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
HORIZON = dt.timedelta(days=30)
RULE = retention_rule(INBOX, HORIZON)


def fill(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE orders.inbox"))
        for age, count in (("40 days", EXPIRED), ("1 day", EXPIRED)):
            connection.execute(
                sa.text(
                    'INSERT INTO orders.inbox (event_id, event_type, topic, partition, "offset", received_at)'
                    " SELECT gen_random_uuid(), 'payment.confirmed', 'payments.events', n % 3, n,"
                    " CAST(:now AS timestamptz) - CAST(:age AS interval) + n * interval '1 ms'"
                    " FROM generate_series(1, :count) AS n"
                ),
                {"now": NOW, "age": age, "count": count},
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE orders.inbox"))


def batched(engine: sa.Engine) -> tuple[float, list[float]]:
    durations = []
    deleted = 0
    started = time.perf_counter()
    while True:
        batch_started = time.perf_counter()
        count = delete_batch(engine, RULE, NOW, BATCH)
        durations.append(time.perf_counter() - batch_started)
        deleted += count
        if count < BATCH:
            break
    assert deleted == EXPIRED, deleted
    return deleted / (time.perf_counter() - started), durations


def one_delete(engine: sa.Engine) -> float:
    started = time.perf_counter()
    with engine.begin() as connection:
        deleted = connection.execute(sa.delete(INBOX).where(INBOX.c.received_at <= NOW - HORIZON)).rowcount
    assert deleted == EXPIRED, deleted
    return deleted / (time.perf_counter() - started)


def main() -> int:
    h.quiet_logging()
    with h.migrated_postgres("orders") as url:
        engine = sa.create_engine(sqlalchemy_url(url), pool_size=2)
        rates, baselines, durations = [], [], []
        for _ in range(ROUNDS):
            fill(engine)
            rate, times = batched(engine)
            rates.append(rate)
            durations += times
            fill(engine)
            baselines.append(one_delete(engine))
        engine.dispose()
    durations.sort()
    print(
        f"{EXPIRED} expired of {2 * EXPIRED} rows, batches of {BATCH}: batch p50 "
        f"{statistics.median(durations) * 1000:.1f} ms, max {durations[-1] * 1000:.1f} ms "
        f"(the one DELETE holds its locks for all of it)",
        flush=True,
    )
    h.report("batched retention", statistics.median(rates), "rows/s", "one DELETE", statistics.median(baselines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
