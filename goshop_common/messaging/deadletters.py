"""Dead letters: poison events parked on ``<topic>.dlq``, listed and replayed.

A consumer that meets an event it can never apply (malformed, of a type the
contract does not know, breaking the contract, refused or crashed on by its
handler) parks the record: the same key, value and headers on the topic's
dead-letter topic, with ``dlq-*`` headers that say what was wrong and where
it came from. The consumer waits for the broker to acknowledge that copy
before it commits the partition's offset, so nothing is lost; a crash in
between may park one record twice, and readers here fold such copies into
one entry (by consumer, original topic, partition and offset).

A replay puts the parked record back on its original topic, byte for byte,
addressed to the consumer that parked it (``replay-for``): every other
consumer group passes it over, and the addressee applies it through its
inbox like any other delivery, so an event already applied, or replayed
twice, is a duplicate and changes nothing. The replay is recorded as a
marker record on the dead-letter topic (``dlq-replay-of``), which is how the
listing knows; no table is needed, so ops stays a reader of other services'
schemas. An entry whose replay is out is not replayed again (AlreadyReplayed:
the API's 409). A replay that fails again is parked again by its consumer,
naming the record it was replayed from (``replay-of``): the listing folds it
into that entry (its error now the latest, replayable again) rather than
showing another.

``python -m goshop_common.messaging.deadletters list`` and ``replay
--dlq-topic T --partition P --offset N`` do the same as the ops API's ``/v1/ops/parked``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from goshop_common import shop_env
from goshop_common.messaging import envelope as events
from goshop_common.messaging.kafka import make_producer, make_reader
from goshop_common.observability import tracing
from goshop_common.settings import BrokerSettings, load_settings

if TYPE_CHECKING:
    from kafka import KafkaProducer
    from kafka.consumer.fetcher import ConsumerRecord
    from opentelemetry.trace import SpanContext

SUFFIX = events.DEAD_LETTER_SUFFIX

# The reasons a record is parked, as the goshop_events_parked_total
# ``reason`` label counts them: a few fixed values, never the free text.
MALFORMED = "malformed"  # not JSON, or no readable envelope
UNKNOWN_TYPE = "unknown_type"  # an envelope of a type the contract does not know
CONTRACT = "contract"  # a known type breaking its schema, or on the wrong topic
INAPPLICABLE = "inapplicable"  # its handler said it can never apply (PoisonEvent)
HANDLER_ERROR = "handler_error"  # its handler raised: a bug
REASONS = (MALFORMED, UNKNOWN_TYPE, CONTRACT, INAPPLICABLE, HANDLER_ERROR)

# Headers a parked record carries besides its own.
HEADER_PREFIX = "dlq-"
ERROR_HEADER = "dlq-error"  # what was wrong, in words (an exception's class and message)
REASON_HEADER = "dlq-reason"  # one of REASONS
CONSUMER_HEADER = "dlq-consumer"
TOPIC_HEADER = "dlq-topic"
PARTITION_HEADER = "dlq-partition"
OFFSET_HEADER = "dlq-offset"
PARKED_AT_HEADER = "dlq-parked-at"
# A replay marker (an empty record on the dead-letter topic) names the offset
# of the parked record it replayed.
REPLAY_OF_HEADER = "dlq-replay-of"
REPLAYED_AT_HEADER = "dlq-replayed-at"
# On the copy a replay puts back on the original topic: which parked record
# it is, and the one consumer it is for.
REPLAY_SOURCE_HEADER = "replay-of"
REPLAY_FOR_HEADER = "replay-for"

# A header is metadata, not a log: a long message is cut (the consumer's log
# keeps the whole of it, and the traceback).
ERROR_MAX_CHARS = 500
# How long a listing waits for the broker before it gives up.
READ_TIMEOUT_SECONDS = 10.0


def dead_letter_topic(topic: str) -> str:
    return events.dead_letter_topic(topic)


def is_dead_letter_topic(topic: str) -> bool:
    return topic.endswith(SUFFIX) and len(topic) > len(SUFFIX)


def dead_letter_topics(bootstrap: str) -> list[str]:
    """The dead-letter topics the broker has (the kernel knows no topic: the
    domain's are goshop_domain.events.DEAD_LETTER_TOPICS)."""
    reader = make_reader(bootstrap)
    try:
        return sorted(topic for topic in reader.topics() if is_dead_letter_topic(topic))
    finally:
        reader.close(autocommit=False)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def own_headers(headers: Iterable[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """A record's headers without the ``dlq-*`` ones a parking added."""
    return [(name, value) for name, value in headers or () if not name.startswith(HEADER_PREFIX)]


def parked_headers(record: ConsumerRecord, consumer: str, reason: str, error: str) -> list[tuple[str, bytes]]:
    """The record's own headers, then the dead-letter ones (any ``dlq-*`` it
    already had, from an earlier parking, replaced)."""
    own = own_headers(record.headers)
    added = {
        ERROR_HEADER: error[:ERROR_MAX_CHARS],
        REASON_HEADER: reason,
        CONSUMER_HEADER: consumer,
        TOPIC_HEADER: record.topic,
        PARTITION_HEADER: str(record.partition),
        OFFSET_HEADER: str(record.offset),
        PARKED_AT_HEADER: _now(),
    }
    return own + [(name, value.encode()) for name, value in added.items()]


class DeadLetters:
    """Parks records for one consumer, through a producer of its own
    (goshop_common.messaging.kafka's defaults: acks=all, bounded waits)."""

    def __init__(self, consumer: str, producer: KafkaProducer) -> None:
        self.consumer = consumer
        self.producer = producer

    def park(
        self,
        parked: Sequence[tuple[ConsumerRecord, str, str]],
        timeout: float = 10.0,
        traces: Sequence[SpanContext | None] | None = None,
    ) -> None:
        """Produce every ``(record, reason, error)`` to its dead-letter topic,
        in the record's partition, and wait until the broker has every one.
        Raises KafkaError if any is refused: the caller must not commit the
        offset past them. ``traces``, one span context (or None) per record:
        each copy is sent in that span's trace (the consumer's ``process``
        span), never as a trace of its own."""
        futures = []
        for (record, reason, error), span_context in zip(parked, traces or [None] * len(parked), strict=True):
            with tracing.within(span_context):
                futures.append(
                    self.producer.send(
                        dead_letter_topic(record.topic),
                        key=record.key,
                        value=record.value,
                        headers=parked_headers(record, self.consumer, reason, error),
                        partition=record.partition,
                    )
                )
        for future in futures:
            future.get(timeout=timeout)

    def close(self) -> None:
        self.producer.close(timeout=5)


# --- Reading them back --------------------------------------------------------


@dataclasses.dataclass
class ParkedEvent:
    """One parked record, as an operator sees it."""

    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    consumer: str
    topic: str
    partition: int
    offset: int
    reason: str
    error: str
    parked_at: str | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    event_id: str | None = None
    event_type: str | None = None
    replay_of: str | None = None
    dlq_offsets: list[int] = dataclasses.field(default_factory=list)
    replayed_at: list[str] = dataclasses.field(default_factory=list)
    # Replays that failed again: the identities of the records their
    # consumer parked (copies of one count once), and where those lie.
    failed_replays: set[tuple[str, str, int, int]] = dataclasses.field(default_factory=set)
    reparked_at: list[tuple[int, int]] = dataclasses.field(default_factory=list)

    @property
    def replayed(self) -> bool:
        """A replay is out and has not failed: every replay but the last
        failed again, or the last has not."""
        return len(self.replayed_at) > len(self.failed_replays)

    def lies_at(self, partition: int, offset: int) -> bool:
        """The record at ``partition`` and ``offset`` of its dead-letter
        topic is this entry's: one of its copies, or a failed replay's."""
        if partition == self.dlq_partition and offset in self.dlq_offsets:
            return True
        return (partition, offset) in self.reparked_at

    def failed_again(self, again: ParkedEvent) -> None:
        """``again``, the parking of a replay of this entry, folded in: the
        error is the newest, and the entry may be replayed again."""
        self.failed_replays.add(again.identity)
        self.reparked_at.append((again.dlq_partition, again.dlq_offset))
        if (again.parked_at or "") >= (self.parked_at or ""):
            self.reason, self.error, self.parked_at = again.reason, again.error, again.parked_at

    @property
    def identity(self) -> tuple[str, str, int, int]:
        # Parked twice (a crash between park and offset commit): one entry.
        return (self.consumer, self.topic, self.partition, self.offset)

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return own_headers(self.headers)

    def as_json(self) -> dict[str, Any]:
        return {
            "dlq_topic": self.dlq_topic,
            "dlq_partition": self.dlq_partition,
            "dlq_offset": self.dlq_offset,
            "consumer": self.consumer,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "error": self.error,
            "parked_at": self.parked_at,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "replay_of": self.replay_of,
            "copies": len(self.dlq_offsets),
            "replayed": self.replayed,
            "replayed_at": self.replayed_at,
        }


def _as_int(value: str | None, default: int = -1) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _identify(value: bytes | None, headers: dict[str, str]) -> tuple[str | None, str | None]:
    """The event's id and type, if the record says them (a malformed one may not)."""
    event_id, event_type = headers.get(events.ID_HEADER), headers.get(events.TYPE_HEADER)
    try:
        body = json.loads(value) if value is not None else None
    except (TypeError, ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("event_id"), str):
            event_id = body["event_id"]
        if isinstance(body.get("event"), str):
            event_type = body["event"]
    return event_id, event_type


def _records(bootstrap: str, topics: Iterable[str], timeout: float) -> list[Any]:
    """Every record now on ``topics``, read without a consumer group (nothing
    is committed, no other reader is disturbed): each partition from its
    beginning up to its end. KafkaError when the broker does not answer
    within ``timeout`` seconds.

    The end is the larger of the partition's end offset and the highwater
    its fetches report. On Kafka the two agree; a broker whose ListOffsets
    answer falls short of the end (goshop_common.messaging.broker_profiles)
    is still read to its last record."""
    reader = make_reader(bootstrap)
    try:
        deadline = time.monotonic() + timeout
        partitions = []
        for topic in topics:
            found = reader.partitions_for_topic(topic)
            partitions += [TopicPartition(topic, p) for p in sorted(found or ())]
        if not partitions:
            return []
        ends = {tp: end for tp, end in reader.end_offsets(partitions).items() if end > 0}
        reader.assign(list(ends))
        if not ends:
            return []
        reader.seek_to_beginning(*ends)
        records = []
        while any(reader.position(tp) < end for tp, end in ends.items()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise KafkaError(f"dead letters not read within {timeout}s")
            for batch in reader.poll(timeout_ms=int(min(left, 0.5) * 1000)).values():
                records += batch
            for tp in ends:
                ends[tp] = max(ends[tp], reader.highwater(tp) or 0)
        return records
    finally:
        reader.close(autocommit=False)


def read_parked(
    bootstrap: str, topics: Iterable[str] | None = None, timeout: float = READ_TIMEOUT_SECONDS
) -> list[ParkedEvent]:
    """Every parked event on the dead-letter ``topics`` (every one the broker
    has by default), oldest first, copies folded into one entry, replays marked and
    replays that failed again folded into the entry they replayed."""
    topics = list(dead_letter_topics(bootstrap) if topics is None else topics)
    parked: dict[tuple[str, str, int, int], ParkedEvent] = {}
    # Offsets are a partition's: (topic, partition, offset) names a record.
    by_position: dict[tuple[str, int, int], ParkedEvent] = {}
    markers = []
    reparked = []
    for record in sorted(_records(bootstrap, topics, timeout), key=lambda r: (r.topic, r.partition, r.offset)):
        headers = events.text_headers(record.headers)
        if REPLAY_OF_HEADER in headers:
            markers.append((record.topic, record.partition, headers))
            continue
        if ERROR_HEADER not in headers:
            continue  # not something goshop parked
        event_id, event_type = _identify(record.value, headers)
        entry = ParkedEvent(
            dlq_topic=record.topic,
            dlq_partition=record.partition,
            dlq_offset=record.offset,
            consumer=headers.get(CONSUMER_HEADER, ""),
            topic=headers.get(TOPIC_HEADER, record.topic.removesuffix(SUFFIX)),
            partition=_as_int(headers.get(PARTITION_HEADER)),
            offset=_as_int(headers.get(OFFSET_HEADER)),
            reason=headers.get(REASON_HEADER, ""),
            error=headers[ERROR_HEADER],
            parked_at=headers.get(PARKED_AT_HEADER),
            key=record.key,
            value=record.value,
            headers=list(record.headers or ()),
            event_id=event_id,
            event_type=event_type,
            replay_of=headers.get(REPLAY_SOURCE_HEADER),
        )
        if entry.replay_of is not None:
            reparked.append(entry)
            continue
        first = parked.setdefault(entry.identity, entry)
        first.dlq_offsets.append(record.offset)
        by_position[(record.topic, record.partition, record.offset)] = first
    for entry in reparked:
        # A replay names the record it was made from: "topic:partition:offset".
        topic, _, position = (entry.replay_of or "").partition(":")  # set: only these were kept
        partition, _, offset = position.partition(":")
        source = by_position.get((topic, _as_int(partition), _as_int(offset)))
        if source is not None:
            source.failed_again(entry)
        else:
            # What it was replayed from is gone (retention): an entry of its own.
            first = parked.setdefault(entry.identity, entry)
            first.dlq_offsets.append(entry.dlq_offset)
            by_position[(entry.dlq_topic, entry.dlq_partition, entry.dlq_offset)] = first
    for topic, partition, headers in markers:
        # A marker is written to the partition of the record it replayed.
        target = by_position.get((topic, partition, _as_int(headers.get(REPLAY_OF_HEADER))))
        if target is not None:
            target.replayed_at.append(headers.get(REPLAYED_AT_HEADER, ""))
    return list(parked.values())


class NotParked(LookupError):
    """No parked record at that dead-letter topic and offset."""


class AlreadyReplayed(RuntimeError):
    """The entry's last replay is out and has not failed: nothing to replay."""


def find_parked(
    bootstrap: str, dlq_topic: str, partition: int, offset: int, timeout: float = READ_TIMEOUT_SECONDS
) -> ParkedEvent:
    """The parked event whose record (or one of whose copies) is at
    ``partition`` and ``offset`` of ``dlq_topic``."""
    if not is_dead_letter_topic(dlq_topic):
        raise NotParked(f"{dlq_topic} is not a dead-letter topic")
    for entry in read_parked(bootstrap, [dlq_topic], timeout):
        if entry.lies_at(partition, offset):
            return entry
    raise NotParked(f"nothing parked at {dlq_topic} partition {partition} offset {offset}")


@dataclasses.dataclass(frozen=True)
class Replay:
    """Where a replay put the parked event back."""

    parked: ParkedEvent
    topic: str
    partition: int
    offset: int

    def as_json(self) -> dict[str, Any]:
        return {
            "parked": self.parked.as_json(),
            "replayed_to": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
        }


def replay(producer: KafkaProducer, entry: ParkedEvent, timeout: float = 10.0) -> Replay:
    """Put ``entry`` back on its topic for its consumer, then record that.

    The copy is the original record (key, value, headers) addressed to the
    consumer that parked it; that consumer's inbox makes a second replay, or
    a replay of an event that was applied after all, a no-op. The marker is
    written after the copy is acknowledged: if it is lost, the listing does
    not say "replayed", and replaying again is harmless.

    AlreadyReplayed, and nothing is sent, when the entry's last replay is
    out and has not failed again (``ParkedEvent.replayed``). Two replays at
    once may both pass that check; the consumer's inbox applies one."""
    if entry.replayed:
        raise AlreadyReplayed(
            f"{entry.dlq_topic} partition {entry.dlq_partition} offset {entry.dlq_offset} was replayed "
            f"at {entry.replayed_at[-1]} and has not failed again"
        )
    source = f"{entry.dlq_topic}:{entry.dlq_partition}:{entry.dlq_offset}"
    headers = [
        (name, value) for name, value in entry.original_headers if name not in (REPLAY_SOURCE_HEADER, REPLAY_FOR_HEADER)
    ]
    headers += [(REPLAY_SOURCE_HEADER, source.encode()), (REPLAY_FOR_HEADER, entry.consumer.encode())]
    sent = producer.send(
        entry.topic, key=entry.key, value=entry.value, headers=headers, partition=max(entry.partition, 0)
    ).get(timeout=timeout)
    marker = [
        (REPLAY_OF_HEADER, str(entry.dlq_offset).encode()),
        (CONSUMER_HEADER, entry.consumer.encode()),
        (REPLAYED_AT_HEADER, _now().encode()),
        (REPLAY_SOURCE_HEADER, f"{sent.topic}:{sent.partition}:{sent.offset}".encode()),
    ]
    producer.send(entry.dlq_topic, key=entry.key, value=b"", headers=marker, partition=entry.dlq_partition).get(
        timeout=timeout
    )
    return Replay(entry, sent.topic, sent.partition, sent.offset)


# --- The command ----------------------------------------------------------------


def _dead_letter_topic_argument(value: str) -> str:
    if not is_dead_letter_topic(value):
        raise argparse.ArgumentTypeError(f"not a dead-letter topic (<topic>{SUFFIX}): {value!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """``list`` prints every parked event as JSON lines; ``replay`` puts one
    back (``--dlq-topic``, ``--partition``, ``--offset``) and prints where."""
    parser = argparse.ArgumentParser(prog="python -m goshop_common.messaging.deadletters")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every parked event, one JSON object a line")
    again = commands.add_parser("replay", help="put one parked event back for its consumer")
    again.add_argument("--dlq-topic", required=True, type=_dead_letter_topic_argument, help=f"a <topic>{SUFFIX}")
    again.add_argument("--partition", required=True, type=int)
    again.add_argument("--offset", required=True, type=int)
    options = parser.parse_args(argv)
    # In development, make run's broker wherever it is (goshop_common.shop_env).
    environ, source = shop_env.cli_environ()
    bootstrap = load_settings(BrokerSettings, environ=environ).kafka_bootstrap
    try:
        return _command(options, bootstrap)
    except (KafkaTimeoutError, KafkaConnectionError) as exc:
        reason = " ".join(str(arg) for arg in exc.args) or type(exc).__name__
        print(shop_env.not_reachable("broker", bootstrap, reason, shop_env.KAFKA_BOOTSTRAP, source), file=sys.stderr)
    except KafkaError as exc:
        print(f"broker at {bootstrap}: {exc}", file=sys.stderr)
    return 1


def _command(options: argparse.Namespace, bootstrap: str) -> int:
    if options.command == "list":
        for entry in read_parked(bootstrap):
            print(json.dumps(entry.as_json()))
        return 0
    try:
        entry = find_parked(bootstrap, options.dlq_topic, options.partition, options.offset)
    except NotParked as exc:
        print(exc, file=sys.stderr)
        return 1
    producer = make_producer(bootstrap)
    try:
        print(json.dumps(replay(producer, entry).as_json()))
    except AlreadyReplayed as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        producer.close(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
