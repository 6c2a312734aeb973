"""Relaying outbox rows to Kafka.

One pass claims a batch of pending rows with ``FOR UPDATE SKIP LOCKED`` (so
replicas take disjoint rows), produces them with ``acks=all``, and in the same
transaction marks the delivered rows published and the failed ones for a retry
with exponential backoff. A crash after producing and before the commit
publishes those rows again later: consumers drop the copies by event id.

Only the oldest pending row of each key is eligible, so a key's events reach
Kafka in the order they were written, and a row that keeps failing holds back
its own key only.

Traced (goshop_common.observability.tracing), each claimed row is relayed in
the trace its event was created in (the row's ``traceparent``): a ``relay
<schema>.outbox`` span, child of the event's ``create`` span, holding the
batch's ``claim``, the row's ``send <topic>`` (kafka-python's
instrumentation, which puts the send's context in the record's headers for
the consumer) and the batch's ``mark``. A batch serves several traces at
once, so its claim and mark appear in each; they are timed as they happened
(the claim is made before the rows, and so their traces, are known). A pass
that claims nothing makes no span.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from kafka.errors import KafkaTimeoutError
from opentelemetry import trace
from opentelemetry.trace import StatusCode
from sqlalchemy.dialects.postgresql import ARRAY

from goshop_common.clock import utcnow
from goshop_common.db import prepared
from goshop_common.messaging.envelope import event_headers
from goshop_common.messaging.outbox import PUBLISHED_CHANNEL
from goshop_common.observability import tracing
from goshop_common.observability.metrics import OUTBOX_PUBLISH_FAILURES, OUTBOX_PUBLISHED

log = logging.getLogger("goshop.outboxer")

# Longer than the producer's delivery timeout (8 s), so a record still in
# flight is not counted as failed and published twice.
FLUSH_TIMEOUT_SECONDS = 10.0


@dataclasses.dataclass
class RelayStats:
    """What one relay did since it started, for tests and benchmarks (the
    metrics say the same to Prometheus)."""

    published: int = 0
    failed: int = 0


def backoff_seconds(attempts: int, base_ms: int, cap_seconds: int) -> float:
    """Delay before retry number ``attempts`` (1-based): base, 2*base, 4*base, ... up to the cap."""
    # The exponent is bounded: a row failing for days must not overflow a float.
    return min(cap_seconds, base_ms / 1000 * 2 ** min(max(0, attempts - 1), 40))


class Relay:
    """Relays one outbox table (``table``, of one schema) to Kafka through
    ``producer``; ``relay_once`` is one claimed, published and settled batch.

    Replicas may run side by side: ``FOR UPDATE SKIP LOCKED`` gives each a
    disjoint batch, and the head-of-key rule keeps every key's order."""

    def __init__(
        self,
        engine: sa.Engine,
        table: sa.Table,
        producer,
        batch_size: int,
        backoff_base_ms: int,
        backoff_cap_seconds: int,
        clock: Callable[[], dt.datetime] = utcnow,
    ):
        self.engine = engine
        self.table = table
        self.producer = producer
        self.batch_size = batch_size
        self.backoff_base_ms = backoff_base_ms
        self.backoff_cap_seconds = backoff_cap_seconds
        self.clock = clock
        self.stats = RelayStats()
        self.name = f"{table.schema}.{table.name}"
        self._published = OUTBOX_PUBLISHED.labels(self.name)
        self._failures = OUTBOX_PUBLISH_FAILURES.labels(self.name)
        # Built once, their values bound at execute time: a relay runs them on
        # every pass, and building them (the alias above all) cost more CPU
        # than running them.
        # Whether a row of this table may be waiting out a backoff, which only
        # a failed publish makes (here or in another replica, which wakes for
        # its own). Unknown at start: a row may have failed before a restart.
        self.may_have_backoff = True
        self._claim_query = self._claim_statement()
        self._next_due_query = sa.select(sa.func.min(table.c.next_attempt_at)).where(
            table.c.published_at.is_(None), self._head_of_key()
        )
        # The rows marked and, delivered with the commit, the doorbell rung
        # for each topic they went to: one statement. A consumer woken by it
        # finds the records in Kafka and the rows marked.
        marked = (
            table.update()
            .where(table.c.id == sa.any_(sa.bindparam("ids", type_=ARRAY(table.c.id.type))))
            .values(published_at=sa.func.now())
            .returning(table.c.topic)
            .cte("marked")
        )
        topics = sa.select(marked.c.topic).distinct().subquery("topics")
        self._mark_published_statement = sa.select(sa.func.pg_notify(PUBLISHED_CHANNEL, topics.c.topic)).select_from(
            topics
        )

    def _head_of_key(self):
        """The row is its key's oldest pending one."""
        outbox = self.table
        earlier = outbox.alias("earlier")
        return ~sa.exists().where(
            earlier.c.key == outbox.c.key,
            earlier.c.published_at.is_(None),
            earlier.c.id < outbox.c.id,
        )

    def _claim(self, connection, now: dt.datetime):
        """Lock the due head-of-key rows, oldest first; rows another replica holds are skipped, not waited for."""
        return prepared.execute(connection, self._claim_query, {"now": now}).all()

    def _claim_statement(self):
        outbox = self.table
        head_of_key = self._head_of_key()
        return (
            sa.select(
                outbox.c.id,
                outbox.c.event_id,
                outbox.c.topic,
                outbox.c.key,
                outbox.c.event_type,
                # As text: sent as PostgreSQL wrote it, never parsed here and written again.
                sa.cast(outbox.c.payload, sa.Text).label("payload"),
                outbox.c.request_id,
                outbox.c.attempts,
                outbox.c.traceparent,
            )
            .where(outbox.c.published_at.is_(None), outbox.c.next_attempt_at <= sa.bindparam("now"), head_of_key)
            .order_by(outbox.c.id)
            .limit(self.batch_size)
            .with_for_update(skip_locked=True, of=outbox)
        )

    def relay_once(self) -> int:
        """One batch. Returns how many rows it claimed (0: nothing is due)."""
        now = self.clock()
        spans = None
        with self.engine.begin() as connection:
            claim_started = tracing.now_ns()
            rows = self._claim(connection, now)
            if not rows:
                return 0
            if tracing.enabled():
                spans = RelaySpans(self.name, rows, claim_started)
            sent = self._send(rows, spans)
            self._flush()
            delivered, failed = self._settle(sent)
            mark_started = tracing.now_ns()
            self._mark_published(connection, delivered)
            self._mark_failed(connection, failed, now)
            if spans is not None:
                spans.marked(mark_started, len(delivered), len(failed))
        trace_ids = {} if spans is None else spans.end(failed)
        self._record(delivered, failed, trace_ids)
        return len(rows)

    def _send(self, rows, spans: RelaySpans | None = None) -> list[tuple[Any, Any, Exception | None]]:
        """Hand each row to the producer: (row, future, None), or (row, None, error) if it refused."""
        sent: list[tuple[Any, Any, Exception | None]] = []
        blocked: KafkaTimeoutError | None = None
        for row in rows:
            if blocked is not None:
                # send() blocks up to max_block_ms when the broker is away;
                # one such timeout is enough to know the rest would wait too.
                sent.append((row, None, blocked))
                continue
            try:
                with contextlib.nullcontext() if spans is None else spans.sending(row):
                    future = self.producer.send(
                        row.topic,
                        key=row.key.encode(),
                        value=row.payload.encode(),
                        headers=event_headers(row.event_type, str(row.event_id), row.request_id),
                    )
            except KafkaTimeoutError as exc:  # no metadata or no buffer within max_block_ms
                blocked = exc
                sent.append((row, None, exc))
            except Exception as exc:  # this record only (invalid topic name, too large): not the others
                sent.append((row, None, exc))
            else:
                sent.append((row, future, None))
        return sent

    def _flush(self) -> None:
        """Wait for the acks; a flush that times out leaves the unacked futures failed, not lost."""
        try:
            self.producer.flush(timeout=FLUSH_TIMEOUT_SECONDS)
        except Exception as exc:
            log.warning("producer flush failed", extra={"table": self.name, "error": exc.__class__.__name__})

    @staticmethod
    def _settle(sent) -> tuple[list, list[tuple[Any, Exception]]]:
        """Split the sent rows, in claim order, into delivered ones and (row, error) pairs."""
        delivered, failed = [], []
        for row, future, error in sent:
            if error is None:
                try:
                    future.get(timeout=0)  # after flush: already resolved, never waits
                except Exception as exc:
                    error = exc
            if error is None:
                delivered.append(row)
            else:
                failed.append((row, error))
        return delivered, failed

    def _mark_published(self, connection, delivered) -> None:
        if delivered:
            prepared.execute(connection, self._mark_published_statement, {"ids": [row.id for row in delivered]}).all()

    def _mark_failed(self, connection, failed, now: dt.datetime) -> None:
        """Count the attempt, keep the error for operators, and push the row's next try back exponentially."""
        if failed:
            self.may_have_backoff = True
        for row, error in failed:
            attempts = row.attempts + 1
            delay = backoff_seconds(attempts, self.backoff_base_ms, self.backoff_cap_seconds)
            connection.execute(
                self.table.update()
                .where(self.table.c.id == row.id)
                .values(
                    attempts=attempts,
                    next_attempt_at=now + dt.timedelta(seconds=delay),
                    last_error=f"{error.__class__.__name__}: {error}"[:500],
                )
            )

    def _record(self, delivered, failed, trace_ids: dict | None = None) -> None:
        """Stats, metrics and logs, after the commit: only what the database now
        says happened. ``trace_ids``: each traced row's ``trace_id`` and ``span_id``."""
        trace_ids = trace_ids or {}
        self.stats.published += len(delivered)
        self.stats.failed += len(failed)
        self._published.inc(len(delivered))
        self._failures.inc(len(failed))
        for row in delivered:
            log.info(
                "event published",
                extra={
                    "table": self.name,
                    "event_id": str(row.event_id),
                    "event": row.event_type,
                    "order_id": row.key,
                    "request_id": row.request_id,
                    "topic": row.topic,
                    **trace_ids.get(row.id, {}),
                },
            )
        if failed:
            log.warning(
                "events not published; will retry",
                extra={
                    "table": self.name,
                    "failed": len(failed),
                    "error": failed[0][1].__class__.__name__,
                    "order_id": failed[0][0].key,
                },
            )

    def next_due_in(self) -> float | None:
        """Seconds until the next row this relay may claim is due (0: now), None if none pend.
        Rows queued behind a key's failing row do not count: they wait for it."""
        with self.engine.connect() as connection:
            due = connection.execute(self._next_due_query).scalar_one()
        if due is None:
            self.may_have_backoff = False
            return None
        return max(0.0, (due - self.clock()).total_seconds())


class RelaySpans:
    """The spans of one claimed batch: for each row, a ``relay`` span in the
    row's own trace (a new trace for a row created untraced) with the batch's
    ``claim`` and, later, ``mark`` timed inside it. See the module docstring."""

    def __init__(self, table: str, rows, claim_started: int):
        claimed = tracing.now_ns()
        self.table = table
        self.tracer = tracing.tracer()
        self.spans: dict[int, trace.Span] = {}
        for row in rows:
            span = self.tracer.start_span(
                f"relay {table}",
                context=tracing.context_from(row.traceparent),
                start_time=claim_started,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": row.topic,
                    "messaging.message.id": str(row.event_id),
                    "goshop.outbox.table": table,
                    "goshop.outbox.attempt": row.attempts + 1,
                },
            )
            self.spans[row.id] = span
            self._child(span, "claim", "SELECT", claim_started, claimed, {"messaging.batch.message_count": len(rows)})

    def _child(self, parent: trace.Span, step: str, operation: str, start: int, end: int, attributes: dict) -> None:
        child = self.tracer.start_span(
            f"{step} {self.table}",
            context=trace.set_span_in_context(parent),
            start_time=start,
            attributes={
                "db.system.name": "postgresql",
                "db.operation.name": operation,
                "db.collection.name": self.table,
                **attributes,
            },
        )
        child.end(end_time=end)

    def sending(self, row):
        """The row's relay span as the current one: the send is its child."""
        return trace.use_span(self.spans[row.id], end_on_exit=False)

    def marked(self, started: int, published: int, failed: int) -> None:
        ended = tracing.now_ns()
        for span in self.spans.values():
            attributes = {"goshop.outbox.published": published, "goshop.outbox.failed": failed}
            self._child(span, "mark", "UPDATE", started, ended, attributes)

    def end(self, failed) -> dict[int, dict[str, str]]:
        """End every relay span after the commit, a failed row's as an error;
        returns each row's trace and span ids, for its log line."""
        errors = {row.id: error for row, error in failed}
        ids = {}
        for row_id, span in self.spans.items():
            error = errors.get(row_id)
            if error is not None:
                span.record_exception(error)
                span.set_status(StatusCode.ERROR, f"{error.__class__.__name__}: will retry")
            span.end()
            ids[row_id] = tracing.ids_of(span)
        return ids
