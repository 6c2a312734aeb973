"""Deleting rows nobody needs any more, a small batch at a time.

A service declares what has expired in one of its tables (a ``Rule``: the
table, a horizon, and the predicate that says which rows are past it); the
maintenance worker (goshop_maintenance) runs every service's rules. Nothing
here knows a service.

Each batch is a transaction of its own, short and bounded:

    DELETE FROM t WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM t WHERE <expired> LIMIT :n FOR UPDATE SKIP LOCKED))

- ``SKIP LOCKED``: a row a request is writing (a login-failure counter being
  incremented, say) is left for the next pass instead of waited for, and two
  maintenance workers side by side take different rows: each row is deleted
  once, by one of them, and neither waits on the other.
- ``SET LOCAL lock_timeout`` and ``statement_timeout``: a batch that would
  queue behind a migration's table lock (and make every query queue behind
  it in turn) gives up instead; the next pass tries again.
- A table is done when a batch deletes fewer than ``n`` rows: the rest are
  unexpired, or locked by someone who is about to write them anyway.

Every predicate must be one an index answers (the services' retention
migrations add them): a batch that scanned the whole table would take as
long as the table is large, while the table is exactly what grows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa

from goshop_common.settings import BaseSettings, SettingsError, positive_int, setting

# A batch waits at most this long for a lock (a migration's, a TRUNCATE's)
# and runs at most this long in all: one batch never holds anyone up for more.
BATCH_LOCK_TIMEOUT = "1s"
BATCH_STATEMENT_TIMEOUT = "10s"


@dataclasses.dataclass(frozen=True)
class RetentionSettings(BaseSettings):
    """How long rows nobody needs any more are kept before the maintenance
    worker deletes them, in small batches. A service's retention module
    extends it with its own horizons (goshop_users.retention...)."""

    retention_interval: int = setting("GOSHOP_RETENTION_INTERVAL_SECONDS", positive_int, 300)
    retention_batch_size: int = setting("GOSHOP_RETENTION_BATCH_SIZE", positive_int, 1000)
    # Published outbox rows only: a pending or failing row stays however old it is.
    retention_outbox: int = setting("GOSHOP_RETENTION_OUTBOX_SECONDS", positive_int, 7 * 24 * 3600)
    # The longest a record stays readable on the broker: Kafka keeps a segment
    # until its newest record is retention.ms old, and a segment rolls after
    # segment.ms, so a record can outlive retention.ms by up to segment.ms
    # (7 d + 7 d with Kafka's defaults). Declared, not asked of the broker.
    broker_retention: int = setting("GOSHOP_BROKER_RETENTION_SECONDS", positive_int, 14 * 24 * 3600)
    # The dedupe horizon: an inbox row must outlive every copy of its event
    # that a consumer could still read, so it must be longer than
    # broker_retention (check refuses one that is not).
    retention_inbox: int = setting("GOSHOP_RETENTION_INBOX_SECONDS", positive_int, 30 * 24 * 3600)

    def check(self, given: frozenset[str]) -> None:
        """In every environment: an inbox horizon within the broker's retention
        would let a consumer re-read an event whose inbox row is already gone."""
        super().check(given)
        if self.retention_inbox <= self.broker_retention:
            raise SettingsError(
                f"GOSHOP_RETENTION_INBOX_SECONDS ({self.retention_inbox}) must be longer than "
                f"GOSHOP_BROKER_RETENTION_SECONDS ({self.broker_retention}): a duplicate still on the broker "
                "would find its inbox row deleted"
            )


@dataclasses.dataclass(frozen=True)
class Rule:
    """A table's retention: rows for which ``expired(cutoff)`` holds, where
    ``cutoff`` is the pass's now minus ``horizon``, are deleted."""

    table: sa.Table
    horizon: dt.timedelta
    expired: Callable[[dt.datetime], sa.ColumnElement[bool]]

    @property
    def name(self) -> str:
        """``schema.table``: the metric label and what the logs say."""
        return f"{self.table.schema}.{self.table.name}"

    def batch(self, now: dt.datetime, limit: int) -> sa.Delete:
        """The DELETE of one batch of at most ``limit`` expired rows at ``now``.

        By ``ctid = ANY(ARRAY(...))``, not ``pk IN (...)``: for IN, the planner
        joins the batch to the whole table (a sequential scan of every row,
        each batch: docs/adr/0005), where the array makes it fetch the chosen
        rows by their address (a TID scan). The addresses
        cannot move in between: the rows are locked by the same statement."""
        ctid: sa.ColumnClause[object] = sa.literal_column("ctid")
        chosen = (
            sa.select(ctid)
            .select_from(self.table)
            .where(self.expired(now - self.horizon))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return sa.delete(self.table).where(ctid == sa.any_(sa.func.array(chosen.scalar_subquery())))


def delete_batch(engine: sa.Engine, rule: Rule, now: dt.datetime, limit: int) -> int:
    """One batch in a transaction of its own; how many rows it deleted."""
    with engine.begin() as connection:
        connection.execute(sa.text(f"SET LOCAL lock_timeout = '{BATCH_LOCK_TIMEOUT}'"))
        connection.execute(sa.text(f"SET LOCAL statement_timeout = '{BATCH_STATEMENT_TIMEOUT}'"))
        return connection.execute(rule.batch(now, limit)).rowcount


def delete_expired(
    engine: sa.Engine,
    rule: Rule,
    now: dt.datetime,
    limit: int,
    *,
    on_batch: Callable[[int], None] | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> int:
    """Delete every row of ``rule``'s table expired at ``now``, ``limit`` at a
    time, until a batch comes back short (or ``stopping()`` says so between
    batches); the number deleted. ``on_batch`` hears each batch's count as it
    commits, so a long first pass shows progress."""
    total = 0
    while True:
        deleted = delete_batch(engine, rule, now, limit)
        total += deleted
        if on_batch is not None:
            on_batch(deleted)
        if deleted < limit or stopping():
            return total
