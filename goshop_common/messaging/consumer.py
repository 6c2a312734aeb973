"""Consuming events exactly once in effect: inbox by event id, offset after commit.

For each polled batch of a partition, one database transaction applies every
new event and records its id in the inbox; only after that transaction
commits is the Kafka offset committed. A crash in between
redelivers the batch, and the inbox turns the redelivery into no-ops.

An event that can never be applied — malformed JSON, a type the contract
does not know, fields breaking the contract, a handler that refuses it or
fails on it — is parked on ``<topic>.dlq`` (goshop_common.messaging.deadletters)
and logged, so one poison message never stalls its partition, and can be
replayed once fixed. The offset moves past it only once the broker has the
parked copy. A database that is down is the opposite case: nothing is
parked, the batch is retried from its first offset after a pause.

Each consumer process serves ``/live``, ``/ready`` and ``/metrics`` on
``--port``: what it did with each event, and how far behind it is.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from kafka.errors import KafkaError
from kafka.structs import MemberState, OffsetAndMetadata
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy.exc import InterfaceError, OperationalError

from goshop_common.db.listen import Listener
from goshop_common.db.session import make_engine
from goshop_common.messaging import deadletters
from goshop_common.messaging import envelope as events
from goshop_common.messaging.deadletters import DeadLetters
from goshop_common.messaging.inbox import first_deliveries
from goshop_common.messaging.kafka import (
    GROUP_FORMS_WITHIN_SECONDS,
    broker_reachable,
    make_consumer,
    make_producer,
)
from goshop_common.messaging.outbox import PUBLISHED_CHANNEL
from goshop_common.messaging.worker import Periodic, configure_logging, health_app, on_sigterm, serve_in_background
from goshop_common.observability import tracing
from goshop_common.observability.metrics import CONSUMER_EVENTS, CONSUMER_LAG, CONSUMER_OUTCOMES, EVENTS_PARKED
from goshop_common.settings import ConsumerSettings, load_settings
from goshop_common.web.health import ping_database

if TYPE_CHECKING:
    from kafka import KafkaConsumer
    from kafka.consumer.fetcher import ConsumerRecord
    from kafka.structs import TopicPartition
    from opentelemetry.trace import SpanContext

    # What logging takes as exc_info: a failure's type, value and traceback.
    ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

log = logging.getLogger("goshop.consumer")

# What /live says of a consumer whose group is (re)forming around it.
WAITING_FOR_GROUP = "waiting for its group"

RETRY_PAUSE_SECONDS = 1.0
# The doorbell (EventConsumer.run): a consumer that found nothing waits for the
# outboxer's ring, and looks by itself this often.
DOORBELL_IDLE_SECONDS = 1.0
# Its fetches: the broker's wait for new records, and a poll long enough to
# see one such fetch answered.
DOORBELL_FETCH_WAIT_MS = 10
DOORBELL_POLL_MS = 25
# Polls that may come back empty after a ring before the consumer waits for
# the next one: a fetch already in flight when the ring came is answered
# empty at its deadline, and the fetch that finds the rung records can land
# after the first poll's end (it did once in a thousand orders, and the
# order then waited out DOORBELL_IDLE_SECONDS).
DOORBELL_RUNG_POLLS = 4
# Errors that say "the database is unreachable right now", not "this event is bad".
TRANSIENT = (OperationalError, InterfaceError)
# A missing offset in a partition (EventConsumer._before_gap): fetched again after
# this pause, for at most GAP_PATIENCE_SECONDS; then taken to be gone.
GAP_RETRY_SECONDS = 0.05
GAP_PATIENCE_SECONDS = 30.0


class PoisonEvent(Exception):
    """The event can never be applied: park it and move on. ``reason`` is
    its class (deadletters.REASONS); a handler raising it says INAPPLICABLE."""

    def __init__(self, message: str, reason: str = deadletters.INAPPLICABLE):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Event:
    """A consumed event: its envelope, its body as sent, and — for a type the
    contract knows — its ``fields`` as read by the contract (UUIDs as
    ``uuid.UUID``). A type the contract does not know never gets this far:
    it is parked. ``fields`` is always set by ``parse``; its default (empty)
    spares a handler's test events that do not need it."""

    event_id: uuid.UUID
    type: str
    body: dict[str, Any]
    topic: str
    partition: int
    offset: int
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def request_id(self) -> str | None:
        return self.headers.get(events.REQUEST_ID_HEADER)


def rebalancing(consumer: KafkaConsumer) -> bool:
    """True while ``consumer`` is not a settled member of its group (joining,
    syncing, or fallen out of it), by kafka-python's own MemberState.

    kafka-python 3.0 (3.0.12 is pinned) sends JoinGroup and SyncGroup on its
    IO thread and keeps that task across polls; a ``poll()`` whose timeout
    ends first returns, and the next one re-awaits the task. But a join that
    has *finished* by the next poll is taken for a stale one and a new
    JoinGroup is sent: the assignment it brought is dropped. A join lasts as
    long as the broker holds it (seconds, up to the rebalance timeout), so a
    consumer that polls briefly and then waits elsewhere almost never sees
    its join land, and rejoins for good. Polling back to back while this is
    True keeps a poll waiting for nearly all of the join."""
    state = consumer.group_metadata().state
    return bool(state != MemberState.STABLE)


def parse(record: ConsumerRecord) -> Event:
    """The event in a Kafka record, checked against the contract; PoisonEvent
    if it breaks it (so no handler ever sees a malformed event), or if its
    type is not one the contract knows: a newer producer's, parked until
    this consumer learns it and the event is replayed."""
    try:
        body = json.loads(record.value)
    except (TypeError, ValueError, RecursionError):
        raise PoisonEvent("not JSON", deadletters.MALFORMED) from None
    try:
        envelope = events.read_envelope(body)
    except events.InvalidEvent as exc:
        raise PoisonEvent(str(exc), deadletters.MALFORMED) from None
    try:
        fields = events.read_fields(envelope.type, record.topic, body)
    except events.InvalidEvent as exc:
        raise PoisonEvent(str(exc), deadletters.CONTRACT) from None
    if fields is None:
        raise PoisonEvent(f"unknown event type {envelope.type!r}", deadletters.UNKNOWN_TYPE)
    return Event(
        envelope.event_id,
        envelope.type,
        body,
        record.topic,
        record.partition,
        record.offset,
        events.text_headers(record.headers),
        fields,
    )


# A handler applies a batch of events, in order, in ``db``'s transaction: a
# batch of one is the simple case (a traced consumer, or one isolating a
# failing event, hands it nothing else). It raises PoisonEvent for a batch
# of one that can never apply, and never commits.
Handler = Callable[[sa.Connection, list[Event]], None]


# The ConsumerStats attribute that counts each outcome of CONSUMER_OUTCOMES.
_STAT_OF_OUTCOME = {
    "consumed": "consumed",
    "applied": "applied",
    "duplicate": "duplicates",
    "parked": "parked",
    "retried": "retries",
}


@dataclass
class ConsumerStats:
    """What one consumer did with its events, as attributes and as the
    goshop_consumer_events_total series: ``count`` updates both, so an outcome
    is counted in one place."""

    consumer: str
    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    parked: int = 0
    retries: int = 0
    topics: tuple[str, ...] = ()
    _series: dict[str, Any] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Every outcome's series exists from the start, at 0, so a rate over
        # it is defined before the first event.
        self._series = {outcome: CONSUMER_EVENTS.labels(self.consumer, outcome) for outcome in CONSUMER_OUTCOMES}
        for topic in self.topics:
            for reason in deadletters.REASONS:
                EVENTS_PARKED.labels(self.consumer, topic, reason)

    def count(self, outcome: str) -> None:
        attribute = _STAT_OF_OUTCOME[outcome]
        setattr(self, attribute, getattr(self, attribute) + 1)
        self._series[outcome].inc()

    def count_parked(self, topic: str, reason: str) -> None:
        self.count("parked")
        EVENTS_PARKED.labels(self.consumer, topic, reason).inc()


class EventConsumer:
    """Runs ``handler`` (see Handler) for every new event of ``consumer``'s
    topics. Poison events are parked through ``dead_letters``."""

    def __init__(
        self,
        name: str,
        engine: sa.Engine,
        consumer: KafkaConsumer,
        inbox: sa.Table,
        handler: Handler,
        doorbell: Listener | None = None,
        *,
        dead_letters: DeadLetters,
    ) -> None:
        self.name = name
        self.engine = engine
        self.consumer = consumer
        self.inbox = inbox
        self.handler = handler
        self.doorbell = doorbell
        self.dead_letters = dead_letters
        self.stats = ConsumerStats(name, topics=tuple(sorted(consumer.subscription() or ())))
        self._lagging: set[tuple[str, str]] = set()
        # Progress, for /live (stalled): when the consumer last applied a
        # batch or stood caught up in a settled group, and what it was
        # waiting for when last seen.
        self._moved_at = time.monotonic()
        self._holding = "starting"
        # partition -> (the offset missing there, when it was first missed).
        self._gaps: dict[TopicPartition, tuple[int, float]] = {}
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish the batch in hand, commit it, and leave ``run``."""
        self._stop.set()

    def run(self, poll_timeout_ms: int = 500) -> None:
        """Poll, apply and commit until ``stop``; then leave the group.

        Batches are processed partition by partition, each in its own
        transaction, so a slow partition's rollback never undoes another's
        work. The offsets are not committed on close: what was applied has
        been committed batch by batch already, and nothing else may be.

        With a ``doorbell``, an assigned consumer that finds nothing new waits
        for the outboxer's ring (PUBLISHED_CHANNEL, naming one of its topics)
        instead of in a broker long-poll, and looks by itself every
        DOORBELL_IDLE_SECONDS. A fetch is sent when there is something to
        fetch: an idle consumer sends none between rings, and a hop's latency
        does not hang on how soon a broker answers a fetch that waits for new
        records (some answer only at its deadline:
        goshop_common.messaging.broker_profiles)."""
        rung_polls = 0
        try:
            while not self._stop.is_set():
                # Only a member of a settled group waits for the doorbell. While
                # it joins, it polls back to back: kafka-python runs the join on
                # its IO thread and hands the result only to a poll() that is
                # waiting when it lands; a join that completes between polls is
                # thrown away and sent again (see rebalancing()).
                assigned = (
                    self.doorbell is not None and not rebalancing(self.consumer) and bool(self.consumer.assignment())
                )
                try:
                    expected = self._positions()
                    batches = self.consumer.poll(timeout_ms=DOORBELL_POLL_MS if assigned else poll_timeout_ms)
                except KafkaError as exc:
                    # The broker is away or the group is rebalancing: nothing was
                    # handed to us, so nothing is lost by trying again shortly.
                    log.warning("poll failed; retrying", extra={"consumer": self.name, "error": exc.__class__.__name__})
                    self._stop.wait(RETRY_PAUSE_SECONDS)
                    continue
                moved = False
                polled = [
                    (partition, self._before_gap(partition, records, expected.get(partition)))
                    for partition, records in batches.items()
                ]
                gapped = any(len(records) < len(batches[partition]) for partition, records in polled)
                polled = [(partition, records) for partition, records in polled if records]
                for index, (partition, records) in enumerate(polled):
                    # What /live says if the batch never comes back.
                    self._holding = f"applying {len(records)} events of {partition.topic}[{partition.partition}]"
                    if self._process(partition, records):
                        moved = True
                        continue
                    # To be tried again, and so are the poll's other batches,
                    # untouched: back to poll() now, not after a failing try
                    # for each partition. A member that does not poll within
                    # max_poll_interval_ms is made to leave its group.
                    for later, later_records in polled[index + 1 :]:
                        self.consumer.seek(later, later_records[0].offset)
                    break
                self._note_progress(moved, self._observe_lag())
                if gapped:
                    self._stop.wait(GAP_RETRY_SECONDS)
                if batches or not assigned:
                    rung_polls = 0
                elif rung_polls:
                    rung_polls -= 1  # rung: its records may be a fetch away
                elif self._wait_for_ring():
                    rung_polls = DOORBELL_RUNG_POLLS
        finally:
            self._forget_lag(self._lagging)
            self.consumer.close(autocommit=False)
            self.dead_letters.close()
            if self.doorbell is not None:
                self.doorbell.close()

    def _positions(self) -> dict[TopicPartition, int]:
        """Each assigned partition's position where the client knows it
        (timeout 0 never waits): the offset its next record must have."""
        positions = {}
        for partition in self.consumer.assignment() or ():
            try:
                position = self.consumer.position(partition, timeout_ms=0)
            except KafkaError:
                continue  # revoked since assignment() answered
            if position is not None:
                positions[partition] = position
        return positions

    def _before_gap(
        self, partition: TopicPartition, records: list[ConsumerRecord], expected: int | None
    ) -> list[ConsumerRecord]:
        """The records of a poll up to the first missing offset, the client
        sent back to fetch from it again; all of them when none is missing.

        goshop's topics are neither compacted nor transactional, so on Apache
        Kafka a partition's offsets have no gaps. make run's broker (Tansu
        0.6, memory storage) can show one for a moment: it takes a batch's
        offsets before it stores the batch, and a fetch returns the batches
        stored, so when two producers (two outboxer replicas) write to one
        partition at once, the later batch can be fetched before the earlier
        is there, and a client that took it would never go back: the earlier
        events were lost to the group (2 of 24,000 orders at 80/s with two
        replicas of each worker; goshop_common.messaging.broker_profiles). An
        offset still missing after GAP_PATIENCE_SECONDS is taken to be gone
        (a topic someone compacted), logged as an error and passed over."""
        if expected is None:
            return records
        missing = None
        for index, record in enumerate(records):
            if record.offset > expected:
                missing = index
                break
            expected = max(expected, record.offset + 1)
        if missing is None:
            self._gaps.pop(partition, None)
            return records
        now = time.monotonic()
        offset, since = self._gaps.get(partition, (expected, now))
        if offset != expected:
            since = now
        fields = {"consumer": self.name, "topic": partition.topic, "partition": partition.partition, "offset": expected}
        if now - since >= GAP_PATIENCE_SECONDS:
            self._gaps.pop(partition, None)
            log.error(
                "offset never appeared; passing over it", extra={**fields, "next_offset": records[missing].offset}
            )
            return records
        self._gaps[partition] = (expected, since)
        log.info("offset not visible yet; fetching it again", extra=fields)
        self.consumer.seek(partition, expected)
        return records[:missing]

    def _wait_for_ring(self) -> bool:
        """Until the outboxer says it published to one of our topics (True), a
        stop, or DOORBELL_IDLE_SECONDS: a record some other producer wrote, or
        a ring missed while the database was away, is fetched then."""
        if self.doorbell is None:  # run() waits for a ring only with a doorbell
            return False
        topics = self.consumer.subscription() or set()
        deadline = time.monotonic() + DOORBELL_IDLE_SECONDS
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            # Short slices, so that a stop request is noticed quickly.
            if self.doorbell.wait(min(left, 0.5)) & topics:
                return True
        return False

    def stalled(self, limit: float) -> str | None:
        """Why the consumer looks stuck, if it has not moved for ``limit``
        seconds: it holds lag, or waits for its group, or never came back
        from a batch. None while it moves, or stands caught up."""
        idle = time.monotonic() - self._moved_at
        if self._holding == WAITING_FOR_GROUP:
            # A member killed mid-batch never left: its successor cannot join
            # before the group forms again, and a restart would only start over.
            limit += GROUP_FORMS_WITHIN_SECONDS
        if idle < limit:
            return None
        return f"no progress for {idle:.0f} s ({self._holding})"

    def _note_progress(self, moved: bool, lag: int | None) -> None:
        if rebalancing(self.consumer):
            self._holding = WAITING_FOR_GROUP
        elif moved or lag == 0:
            self._moved_at = time.monotonic()
            self._holding = "caught up"
        else:
            self._holding = "position not known yet" if lag is None else f"{lag} events behind"

    def _observe_lag(self) -> int | None:
        """Set the lag of each assigned partition whose highwater is known (it
        comes with fetch responses), and drop the series of partitions that
        went to another member. The total, None if a partition's is unknown."""
        total: int | None = 0
        observed = set()
        for partition in self.consumer.assignment() or ():
            try:
                highwater = self.consumer.highwater(partition)
                # A fetched partition has its position: timeout 0 never waits.
                position = None if highwater is None else self.consumer.position(partition, timeout_ms=0)
            except KafkaError:
                continue  # revoked since assignment() answered
            if position is None:
                total = None
                continue
            labels = (partition.topic, str(partition.partition))
            lag = max(0, highwater - position)
            CONSUMER_LAG.labels(self.name, *labels).set(lag)
            observed.add(labels)
            total = None if total is None else total + lag
        self._forget_lag(self._lagging - observed)
        self._lagging = observed
        return total

    def _forget_lag(self, partitions: Iterable[tuple[str, str]]) -> None:
        for topic, partition in partitions:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.name, topic, partition)

    def _process(self, partition: TopicPartition, records: list[ConsumerRecord]) -> bool:
        """Apply one partition's batch in one transaction, then commit its
        offset; False when the batch is to be tried again.

        The batch first runs as one plain transaction: the inbox rows of all
        its events are one statement, and the handler gets its new events at
        once (a traced batch runs event by event, each in its span). Should
        the handler fail, that transaction is rolled back and the batch runs
        again with each event in a savepoint of its own, so that the failing
        event alone is parked. Outcomes are counted and logged once the batch
        commits.

        Then the poison records are parked, and the offset is committed only
        once the broker has acknowledged every parked copy: if it refuses
        one, the batch is run again (its applied events are duplicates by
        then, and a record parked twice is listed once)."""
        try:
            try:
                outcomes = self._apply_batch(records, isolated=False)
            except _HandlerFailed:
                outcomes = self._apply_batch(records, isolated=True)
        except TRANSIENT:
            # The database is away: apply nothing, skip nothing, try the batch again.
            self.stats.count("retried")
            log.warning(
                "database unavailable; retrying batch",
                extra={"consumer": self.name, "topic": partition.topic, "partition": partition.partition},
            )
            self.consumer.seek(partition, records[0].offset)
            self._stop.wait(RETRY_PAUSE_SECONDS)
            return False
        poison = [outcome for outcome in outcomes if outcome.name == "parked"]
        for outcome in outcomes:
            if outcome.name != "parked":
                self.stats.count("consumed")
                self.stats.count(outcome.name)
                log.log(outcome.level, outcome.message, extra=outcome.fields, exc_info=outcome.exc_info)
        if poison:
            try:
                self.dead_letters.park(
                    [(o.record, o.reason or "", o.error or "") for o in poison],
                    traces=[o.trace_context for o in poison],
                )
            except KafkaError as exc:
                # Not parked, so not passed: nothing is lost by trying again.
                self.stats.count("retried")
                log.warning(
                    "parking failed; retrying batch",
                    extra={
                        "consumer": self.name,
                        "topic": partition.topic,
                        "partition": partition.partition,
                        "error": exc.__class__.__name__,
                    },
                )
                self.consumer.seek(partition, records[0].offset)
                self._stop.wait(RETRY_PAUSE_SECONDS)
                return False
            for outcome in poison:
                self.stats.count("consumed")
                topic = outcome.record.topic if outcome.record is not None else ""  # _parked always sets it
                self.stats.count_parked(topic, outcome.reason or "")
                log.log(outcome.level, outcome.message, extra=outcome.fields, exc_info=outcome.exc_info)
        try:
            self.consumer.commit({partition: OffsetAndMetadata(records[-1].offset + 1, "", -1)})
        except KafkaError as exc:
            # A rebalance took the partition away; its new owner gets the batch
            # again and the inbox makes that a no-op.
            log.warning("offset commit failed", extra={"consumer": self.name, "error": exc.__class__.__name__})
        return True

    def _apply_batch(self, records: list[ConsumerRecord], *, isolated: bool) -> list[Outcome]:
        """The batch's outcomes, record by record, in one transaction: all its
        new events handed to the handler at once, or, ``isolated`` (or traced,
        each event in its span), each in a savepoint of its own, as a batch of
        one."""
        # Core, on one connection: handlers and the inbox only execute statements.
        with self.engine.begin() as db:
            if isolated or tracing.enabled():
                return [self._traced(record, functools.partial(self._apply_alone, db, record)) for record in records]
            return self._apply_together(db, records)

    def _apply_together(self, db: sa.Connection, records: list[ConsumerRecord]) -> list[Outcome]:
        """The inbox rows of every event in one statement, then the first
        deliveries to the handler; a handler failure is _HandlerFailed, for
        the batch to run again isolated."""
        outcomes: list[Outcome | None] = []
        screened = []
        for record in records:
            early = self._screen(record)
            if isinstance(early, Outcome):
                outcomes.append(early)
            else:
                screened.append((len(outcomes), *early))
                outcomes.append(None)
        first = first_deliveries(db, self.inbox, [event for _index, event, _fields in screened])
        batch = []
        for index, event, fields in screened:
            if event.event_id in first:
                first.discard(event.event_id)  # a second copy in the batch is a duplicate
                batch.append(event)
                outcomes[index] = Outcome("applied", logging.INFO, "event applied", fields)
            else:
                outcomes[index] = Outcome("duplicate", logging.INFO, "duplicate event ignored", fields)
        try:
            if batch:
                self.handler(db, batch)
        except TRANSIENT:
            raise
        except Exception as exc:
            raise _HandlerFailed from exc
        return [outcome for outcome in outcomes if outcome is not None]  # every slot is filled above

    def _apply_alone(self, db: sa.Connection, record: ConsumerRecord) -> Outcome:
        """One record, in a savepoint of the batch's transaction: a record
        that fails rolls back only its own work, never its neighbours', and
        is parked."""
        early = self._screen(record)
        if isinstance(early, Outcome):
            return early
        event, fields = early
        savepoint = db.begin_nested()
        try:
            if not first_deliveries(db, self.inbox, [event]):
                outcome = Outcome("duplicate", logging.INFO, "duplicate event ignored", fields)
            else:
                self.handler(db, [event])
                outcome = Outcome("applied", logging.INFO, "event applied", fields)
        except TRANSIENT:
            raise
        except Exception as exc:
            savepoint.rollback()
            if isinstance(exc, PoisonEvent):
                reason = str(exc)
                fields = {**fields, "reason": reason}
                return _parked(record, exc.reason, reason, "parking event that cannot apply", fields)
            # A bug in a handler must not stall the partition either: parked
            # with the exception's class and message, to replay once fixed;
            # the log carries the traceback.
            return _parked(
                record,
                deadletters.HANDLER_ERROR,
                f"{type(exc).__name__}: {exc}",
                "parking event whose handler failed",
                fields,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        savepoint.commit()
        return outcome

    def _traced(self, record: ConsumerRecord, apply: Callable[[], Outcome]) -> Outcome:
        """``apply()``; when the process traces, in a ``process <topic>``
        span that continues the trace the record's headers carry (the
        outboxer's send), and the outcome's log line, written after the batch
        commits, names that trace."""
        if not tracing.enabled():
            return apply()
        headers = events.text_headers(record.headers)
        attributes = {
            "messaging.system": "kafka",
            "messaging.destination.name": record.topic,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.consumer.group.name": getattr(self.consumer, "config", {}).get("group_id") or self.name,
            "goshop.consumer": self.name,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
        }
        if events.ID_HEADER in headers:
            attributes["messaging.message.id"] = headers[events.ID_HEADER]
        if isinstance(record.key, bytes):
            attributes["messaging.kafka.message.key"] = record.key.decode(errors="replace")
        with tracing.tracer().start_as_current_span(
            f"process {record.topic}", context=propagate.extract(headers), kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            outcome = apply()
            span.set_attribute("goshop.consumer.outcome", outcome.name)
            if outcome.name == "parked":
                span.set_status(StatusCode.ERROR, outcome.message)
        outcome.fields.update(tracing.ids_of(span))
        return dataclasses.replace(outcome, trace_context=span.get_span_context())

    def _screen(self, record: ConsumerRecord) -> Outcome | tuple[Event, dict[str, Any]]:
        """What a record is before any statement: another consumer's replay
        (passed over) or poison (parked), as an Outcome; otherwise its event
        and the fields of its log line."""
        replay_for = events.text_headers(record.headers).get(deadletters.REPLAY_FOR_HEADER)
        if replay_for is not None and replay_for != self.name:
            # Another consumer's parked event, put back for it alone: this
            # consumer saw the original at its own offset already.
            fields = {"consumer": self.name, "topic": record.topic, "offset": record.offset, "replay_for": replay_for}
            return Outcome("duplicate", logging.INFO, "replay for another consumer passed over", fields)
        try:
            event = parse(record)
        except PoisonEvent as exc:
            fields = {
                "consumer": self.name,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": str(exc),
            }
            return _parked(record, exc.reason, str(exc), "parking event the contract refuses", fields)
        fields = {
            "consumer": self.name,
            "event_id": str(event.event_id),
            "event": event.type,
            "order_id": event.body.get("order_id"),
            "request_id": event.request_id,
            "topic": event.topic,
            "partition": event.partition,
            "offset": event.offset,
        }
        return event, fields


@dataclass(frozen=True)
class Outcome:
    """What became of one record: its ConsumerStats outcome and its log line."""

    name: str
    level: int
    message: str
    fields: dict[str, Any]
    exc_info: ExcInfo | None = None
    # A parked record: the record itself, its reason class and error text.
    record: ConsumerRecord | None = None
    reason: str | None = None
    error: str | None = None
    # The record's ``process`` span, when traced: its parked copy is sent in it.
    trace_context: SpanContext | None = None


def _parked(
    record: ConsumerRecord,
    reason: str,
    error: str,
    message: str,
    fields: dict[str, Any],
    exc_info: ExcInfo | None = None,
) -> Outcome:
    fields = {**fields, "park_reason": reason, "dlq_topic": deadletters.dead_letter_topic(record.topic)}
    return Outcome("parked", logging.ERROR, message, fields, exc_info, record, reason, error)


class _HandlerFailed(Exception):
    """A handler raised in a batch run without savepoints: run it again with them."""


def build_consumer(
    settings: ConsumerSettings,
    name: str,
    group: str,
    topics: list[str],
    inbox: sa.Table,
    handler: Handler,
    **overrides: Any,
) -> EventConsumer:
    """An EventConsumer with its own small connection pool, Kafka consumer,
    doorbell (see EventConsumer.run) and dead-letter producer."""
    engine = make_engine(settings, pool_size=2, max_overflow=0)
    # Short: a fetch is sent when there is something to fetch, and one still
    # in flight when the doorbell rings holds the next one back this long.
    overrides.setdefault("fetch_max_wait_ms", DOORBELL_FETCH_WAIT_MS)
    consumer = make_consumer(settings.kafka_bootstrap, group, topics, **overrides)
    doorbell = Listener(settings.database_url, PUBLISHED_CHANNEL, f"goshop-{name}-consumer-doorbell")
    dead_letters = DeadLetters(name, make_producer(settings.kafka_bootstrap))
    return EventConsumer(name, engine, consumer, inbox, handler, doorbell, dead_letters=dead_letters)


C = TypeVar("C", bound=ConsumerSettings)


def run_consumer(
    build: Callable[[C], EventConsumer],
    *,
    settings_class: type[C],
    service: str,
    port: int,
    argv: list[str] | None = None,
    tasks: Callable[[C, EventConsumer], list[Periodic]] | None = None,
) -> int:
    """A consumer process's main: its settings (a ``settings_class``), JSON logs, health and
    metrics on ``--port`` (``port`` by default), loop until SIGTERM. ``tasks``
    makes the periodic tasks that run beside the loop, started before it and
    stopped after it."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port, help="health and metrics endpoints")
    options = parser.parse_args(argv)
    settings = load_settings(settings_class)
    configure_logging(settings)
    # Before build: its engine and consumer are instrumented as they are made.
    tracing.configure(service)
    worker = build(settings)
    checks = {
        "database": lambda: ping_database(worker.engine) >= 0,
        "broker": lambda: broker_reachable(settings.kafka_bootstrap),
    }
    app = health_app(
        settings,
        checks,
        service=f"{worker.name}-consumer",
        engine=worker.engine,
        stalled=lambda: worker.stalled(settings.consumer_stall_seconds),
    )
    serve_in_background(app, options.host, options.port)
    on_sigterm(worker.stop)
    periodic = [task.start() for task in (tasks(settings, worker) if tasks else ())]
    try:
        worker.run()
    finally:
        for task in periodic:
            task.stop()
    return 0
