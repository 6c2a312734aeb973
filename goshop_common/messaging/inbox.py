"""The inbox: which events a consumer has already applied, by event id.

A consumer records the event id in the same transaction as the event's
effect. Kafka may deliver an event again (a rebalance, a crash before the
offset commit) and the outboxer may publish a row twice (a crash between
produce and mark) at a new offset, so duplicates are caught by the id the
event carries, never by topic/partition/offset.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID, insert

from goshop_common.db import prepared
from goshop_common.db.arrays import array_rows, array_values
from goshop_common.db.retention import Rule
from goshop_common.observability import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span
    from sqlalchemy.sql.dml import ReturningInsert

    from goshop_common.db.alembic_op import Op
    from goshop_common.messaging.consumer import Event


def inbox_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "inbox",
        metadata,
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        # Retention's (create_inbox_retention_index_v1).
        sa.Index("ix_inbox_received_at", "received_at"),
        # The trace context of the span that applied the event (add_inbox_trace_context_v2).
        sa.Column("traceparent", sa.Text),
    )


def create_inbox_v1(op: Op, schema: str) -> None:
    """Migration step (frozen; see outbox.create_outbox_v1)."""
    op.execute(
        f"""
        CREATE TABLE {schema}.inbox (
            event_id uuid NOT NULL,
            event_type text NOT NULL,
            topic text NOT NULL,
            partition integer NOT NULL,
            "offset" bigint NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_inbox PRIMARY KEY (event_id)
        )
        """
    )


def create_inbox_retention_index_v1(op: Op, schema: str) -> None:
    """Migration step (frozen): the rows by arrival, how retention finds the old ones."""
    # Here, not at the top: alembic is for migrations, not every process that writes events.
    from goshop_common.db.migrations import create_index_concurrently

    create_index_concurrently(op, "ix_inbox_received_at", schema, "inbox (received_at)")


def drop_inbox_retention_index_v1(op: Op, schema: str) -> None:
    op.execute(f"DROP INDEX IF EXISTS {schema}.ix_inbox_received_at")


def retention_rule(table: sa.Table, horizon: dt.timedelta) -> Rule:
    """Rows received more than ``horizon`` ago (goshop_common.db.retention).

    The horizon is the dedupe horizon: once a row is gone, a copy of its
    event is applied again. It must be longer than any copy can still arrive:
    than the broker keeps a record (settings refuse an inbox horizon within
    the declared broker retention; received_at is no earlier than the
    record's produce time, so a row outlives its record on the broker). An
    outbox row re-published after an outboxer crash is re-published within
    seconds of the crash, not weeks, unless the broker stays away that long."""
    received_at = table.c.received_at
    return Rule(table, horizon, lambda cutoff: received_at <= cutoff)


def add_inbox_trace_context_v2(op: Op, schema: str) -> None:
    """Migration step (frozen): the ``traceparent`` of the consumer span that
    applied each event. Nullable, no default: no row is rewritten, and the
    previous release, which never writes it, keeps working."""
    op.execute(f"ALTER TABLE {schema}.inbox ADD COLUMN traceparent text")


def drop_inbox_trace_context_v2(op: Op, schema: str) -> None:
    op.execute(f"ALTER TABLE {schema}.inbox DROP COLUMN IF EXISTS traceparent")


_DELIVERED = ("event_id", "event_type", "topic", "partition", "offset", "traceparent")


@functools.cache
def _record(table: sa.Table) -> ReturningInsert[tuple[uuid.UUID]]:
    # One statement for a whole batch, whatever its size (goshop_common.db.arrays).
    delivered = array_rows("delivered", {name: table.c[name].type for name in _DELIVERED}, "all_")
    return (
        insert(table)
        .from_select(list(_DELIVERED), sa.select(*delivered.c))
        .on_conflict_do_nothing(index_elements=[table.c.event_id])
        .returning(table.c.event_id)
    )


def first_deliveries(db: sa.Connection, table: sa.Table, events: Sequence[Event]) -> set[uuid.UUID]:
    """Record every event of a batch in one statement; the ids of those
    delivered for the first time. An id the batch carries twice is recorded
    once, and returned once: its first copy is the one to apply.

    Traced, that decision is a span of its own (``inbox <schema>.inbox``,
    ``goshop.inbox.first_delivery``: every event of the batch was new), and
    the rows keep the trace context they were applied in."""
    if not events:
        return set()
    traceparent = None
    span: AbstractContextManager[Span | None] = contextlib.nullcontext()
    if tracing.enabled():
        span = tracing.tracer().start_as_current_span(f"inbox {table.schema}.{table.name}")
    with span as current:
        if current is not None:
            traceparent = tracing.current_traceparent()
        rows = [
            {
                "event_id": e.event_id,
                "event_type": e.type,
                "topic": e.topic,
                "partition": e.partition,
                "offset": e.offset,
                "traceparent": traceparent,
            }
            for e in events
        ]
        first = set(prepared.execute(db, _record(table), array_values(rows, _DELIVERED, "all_")).scalars())
        if current is not None:
            current.set_attribute("goshop.inbox.first_delivery", len(first) == len({e.event_id for e in events}))
    return first
