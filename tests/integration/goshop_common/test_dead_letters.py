"""Poison events over the real broker and database: parked on <topic>.dlq with
what was wrong and where they came from, the partition carrying on, nothing
lost when the broker will not take the parked copy, and a replay that
applies once."""

import json
import threading
import uuid

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition

from goshop_common.messaging import deadletters
from goshop_common.messaging.consumer import EventConsumer
from goshop_common.messaging.deadletters import DeadLetters, find_parked, read_parked, replay
from goshop_common.messaging.inbox import inbox_table
from goshop_common.messaging.kafka import ensure_topics, make_consumer, make_producer
from goshop_common.observability.metrics import REGISTRY
from goshop_devtools.postgres import free_port
from goshop_domain.events import ALL_TOPICS, ORDERS_TOPIC, event_headers
from tests.integration.goshop_common.test_consumer_batches import order_created, recorded
from tests.saga_runtime import wait_until
from tests.support import scratch_schema

SCHEMA = "dead_letters_test"
METADATA = sa.MetaData(schema=SCHEMA)
INBOX = inbox_table(METADATA)
EFFECTS = sa.Table("effects", METADATA, sa.Column("event_id", sa.Uuid, primary_key=True))

DLQ = f"{ORDERS_TOPIC}.dlq"
PARTITION = 1
BUG = "a bug in the handler"


@pytest.fixture
def scratch(settings):
    with scratch_schema(settings, METADATA) as engine:
        yield engine


def send(producer, value: bytes, headers=()) -> int:
    return producer.send(ORDERS_TOPIC, key=b"k", value=value, headers=list(headers), partition=PARTITION).get(10).offset


def send_event(producer, body: dict) -> int:
    return send(producer, json.dumps(body).encode(), event_headers(body["event"], body["event_id"], "req-1"))


class Worker:
    """An EventConsumer in a thread, in group ``group``; ``buggy`` event ids
    make its handler raise."""

    def __init__(self, bootstrap, engine, group, name="dlq-test", buggy=(), dlq_bootstrap=None, **producer):
        self.buggy = set(buggy)
        kafka = make_consumer(bootstrap, group, [ORDERS_TOPIC])
        letters = DeadLetters(name, make_producer(dlq_bootstrap or bootstrap, **producer))
        self.consumer = EventConsumer(name, engine, kafka, INBOX, self.handle, dead_letters=letters)
        self.thread = threading.Thread(target=self.consumer.run, kwargs={"poll_timeout_ms": 100})
        self.thread.start()

    def handle(self, db, batch):
        db.execute(EFFECTS.insert(), [{"event_id": event.event_id} for event in batch])
        if any(str(event.event_id) in self.buggy for event in batch):
            raise RuntimeError(BUG)

    @property
    def stats(self):
        return self.consumer.stats

    def stop(self):
        self.consumer.stop()
        self.thread.join(15)


def committed(bootstrap: str, group: str) -> int | None:
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return reader.committed(TopicPartition(ORDERS_TOPIC, PARTITION))
    finally:
        reader.close()


def parked_count(consumer: str, reason: str) -> float:
    labels = {"consumer": consumer, "topic": ORDERS_TOPIC, "reason": reason}
    return REGISTRY.get_sample_value("goshop_events_parked_total", labels) or 0.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_each_kind_of_poison_is_parked_with_its_headers_and_the_partition_carries_on(own_broker, scratch):
    producer = make_producer(own_broker.bootstrap)
    unknown = {**order_created(), "event": "order.shipped"}
    breaking = {**order_created(), "amount_cents": "lots"}
    crashing, good = order_created(), order_created()
    offsets = {
        deadletters.MALFORMED: send(producer, b"not json", [("request-id", b"req-0")]),
        deadletters.UNKNOWN_TYPE: send_event(producer, unknown),
        deadletters.CONTRACT: send_event(producer, breaking),
        deadletters.HANDLER_ERROR: send_event(producer, crashing),
    }
    good_offset = send_event(producer, good)
    producer.close(timeout=5)
    group, name = unique("dlq-kinds"), unique("kinds")
    worker = Worker(own_broker.bootstrap, scratch, group, name, buggy={crashing["event_id"]})
    try:
        wait_until(lambda: worker.stats.consumed >= 5, timeout=30, message="every record consumed")
    finally:
        worker.stop()

    # The good record after them was applied; the crashing one's effect went with its savepoint.
    assert recorded(scratch, EFFECTS) == recorded(scratch, INBOX) == {good["event_id"]}
    assert (worker.stats.applied, worker.stats.parked) == (1, 4)
    assert committed(own_broker.bootstrap, group) == good_offset + 1
    for reason in offsets:
        assert parked_count(name, reason) == 1

    parked = {entry.reason: entry for entry in read_parked(own_broker.bootstrap, [DLQ])}
    assert set(parked) == set(offsets)
    for reason, offset in offsets.items():
        entry = parked[reason]
        assert (entry.consumer, entry.topic, entry.partition, entry.offset) == (name, ORDERS_TOPIC, PARTITION, offset)
        assert (entry.dlq_topic, entry.dlq_partition, entry.key) == (DLQ, PARTITION, b"k")
        headers = dict(entry.headers)
        assert headers["dlq-consumer"] == name.encode()
        assert headers["dlq-topic"] == ORDERS_TOPIC.encode()
        assert headers["dlq-partition"] == str(PARTITION).encode()
        assert headers["dlq-offset"] == str(offset).encode()
        assert headers["dlq-reason"] == reason.encode()
        assert headers["dlq-parked-at"]
        assert headers["request-id"] in (b"req-0", b"req-1")  # its own headers kept
        assert not entry.replayed_at
    assert parked[deadletters.MALFORMED].value == b"not json"
    assert parked[deadletters.MALFORMED].error == "not JSON"
    assert parked[deadletters.UNKNOWN_TYPE].error == "unknown event type 'order.shipped'"
    assert parked[deadletters.UNKNOWN_TYPE].event_id == unknown["event_id"]
    assert "amount_cents" in parked[deadletters.CONTRACT].error
    crashed = parked[deadletters.HANDLER_ERROR]
    # The value exactly as the producer wrote it; the class and message, never a traceback.
    assert json.loads(crashed.value) == crashing
    assert crashed.error == f"RuntimeError: {BUG}"
    assert (crashed.event_id, crashed.event_type) == (crashing["event_id"], "order.created")


@pytest.fixture
def events_broker():
    """A second broker of the test's own, for the events, while own_broker
    takes the dead letters (and is stopped to refuse them)."""
    from tests.plugins.broker import _started_broker

    with _started_broker() as broker:
        yield broker


def test_a_broker_refusing_the_parked_copy_leaves_the_offset_uncommitted_and_loses_nothing(
    events_broker,
    own_broker,
    scratch,
):
    # The dead letters go to a broker of their own, stopped: it refuses them.
    quick = {
        "max_block_ms": 1000,
        "request_timeout_ms": 1000,
        "delivery_timeout_ms": 1500,
        "bootstrap_timeout_ms": 4000,
    }
    producer = make_producer(events_broker.bootstrap)
    before, crashing, after = order_created(), order_created(), order_created()
    first = send_event(producer, before)
    send_event(producer, crashing)
    last = send_event(producer, after)
    producer.close(timeout=5)
    group, name = unique("dlq-refused"), unique("refused")
    worker = None
    try:
        dlq_producer_ready = make_producer(own_broker.bootstrap)  # the broker is up when the producer starts
        dlq_producer_ready.close(timeout=5)
        worker = Worker(
            events_broker.bootstrap,
            scratch,
            group,
            name,
            buggy={crashing["event_id"]},
            dlq_bootstrap=own_broker.bootstrap,
            **quick,
        )
        own_broker.stop()
        wait_until(lambda: worker.stats.retries >= 2, timeout=40, message="parking retried")
        assert worker.stats.parked == 0
        assert committed(events_broker.bootstrap, group) in (None, first)
        # Retried, the batch applies nothing twice.
        assert recorded(scratch, EFFECTS) == {before["event_id"], after["event_id"]}

        own_broker.start()
        ensure_topics(own_broker.bootstrap, ALL_TOPICS)
        wait_until(lambda: worker.stats.parked >= 1, timeout=40, message="parked once the broker is back")
        wait_until(lambda: committed(events_broker.bootstrap, group) == last + 1, timeout=20, message="offset moved")
    finally:
        if worker is not None:
            worker.stop()
    assert recorded(scratch, EFFECTS) == {before["event_id"], after["event_id"]}
    (entry,) = read_parked(own_broker.bootstrap, [DLQ])
    assert (entry.consumer, entry.event_id, entry.reason) == (name, crashing["event_id"], deadletters.HANDLER_ERROR)


def test_a_replayed_event_applies_once_after_the_fix_and_a_second_replay_is_refused(own_broker, scratch):
    producer = make_producer(own_broker.bootstrap)
    crashing = order_created()
    send_event(producer, crashing)
    group, name = unique("dlq-replay"), unique("replay")
    buggy = Worker(own_broker.bootstrap, scratch, group, name, buggy={crashing["event_id"]})
    try:
        wait_until(lambda: buggy.stats.parked >= 1, timeout=30, message="parked")
    finally:
        buggy.stop()
    (entry,) = read_parked(own_broker.bootstrap, [DLQ])
    assert not recorded(scratch, EFFECTS)

    fixed = Worker(own_broker.bootstrap, scratch, group, name)  # the same consumer, its bug fixed
    try:
        replay(producer, find_parked(own_broker.bootstrap, DLQ, entry.dlq_partition, entry.dlq_offset))
        wait_until(lambda: fixed.stats.applied >= 1, timeout=30, message="replay applied")
        with pytest.raises(deadletters.AlreadyReplayed):
            replay(producer, find_parked(own_broker.bootstrap, DLQ, entry.dlq_partition, entry.dlq_offset))
        # Two at once may both pass the check (``entry`` was read before
        # the first): the consumer's inbox applies one.
        replay(producer, entry)
        wait_until(lambda: fixed.stats.duplicates >= 1, timeout=30, message="second copy seen")
    finally:
        fixed.stop()
        producer.close(timeout=5)
    assert recorded(scratch, EFFECTS) == recorded(scratch, INBOX) == {crashing["event_id"]}
    assert (fixed.stats.applied, fixed.stats.duplicates, fixed.stats.parked) == (1, 1, 0)
    (listed,) = read_parked(own_broker.bootstrap, [DLQ])
    assert listed.as_json()["replayed"] is True
    assert len(listed.replayed_at) == 2


def test_a_replay_for_one_consumer_is_passed_over_by_another(own_broker, scratch):
    producer = make_producer(own_broker.bootstrap)
    body = order_created()
    headers = [*event_headers(body["event"], body["event_id"]), ("replay-for", b"someone-else")]
    send(producer, json.dumps(body).encode(), headers)
    producer.close(timeout=5)
    bystander = Worker(own_broker.bootstrap, scratch, unique("dlq-bystander"), unique("bystander"))
    try:
        wait_until(lambda: bystander.stats.consumed >= 1, timeout=30, message="consumed")
    finally:
        bystander.stop()
    assert (bystander.stats.applied, bystander.stats.duplicates, bystander.stats.parked) == (0, 1, 0)
    assert not recorded(scratch, EFFECTS)


def test_a_parked_record_that_is_not_there_cannot_be_replayed(own_broker):
    with pytest.raises(deadletters.NotParked):
        find_parked(own_broker.bootstrap, DLQ, PARTITION, 12345)
    with pytest.raises(deadletters.NotParked):
        find_parked(own_broker.bootstrap, ORDERS_TOPIC, PARTITION, 0)


def test_a_record_parked_twice_is_listed_once(own_broker):
    producer = make_producer(own_broker.bootstrap)
    offset = send(producer, b"not json")
    [record] = _read_back(own_broker.bootstrap, offset)
    letters = DeadLetters("twice", producer)
    # A crash between parking and the offset commit parks the record again.
    letters.park([(record, deadletters.MALFORMED, "not JSON")])
    letters.park([(record, deadletters.MALFORMED, "not JSON")])
    producer.close(timeout=5)
    (entry,) = read_parked(own_broker.bootstrap, [DLQ])
    assert (entry.offset, len(entry.dlq_offsets)) == (offset, 2)
    assert find_parked(own_broker.bootstrap, DLQ, PARTITION, entry.dlq_offsets[1]).identity == entry.identity


def _read_back(bootstrap, offset):
    from goshop_common.messaging.kafka import make_reader

    reader = make_reader(bootstrap)
    try:
        tp = TopicPartition(ORDERS_TOPIC, PARTITION)
        reader.assign([tp])
        reader.seek(tp, offset)
        return [
            r for r in wait_until(lambda: reader.poll(500).get(tp), timeout=10, message="read") if r.offset == offset
        ]
    finally:
        reader.close()


def test_the_command_lists_parked_events_and_replays_one(own_broker, monkeypatch, capsys):
    producer = make_producer(own_broker.bootstrap)
    offset = send(producer, b"not json")
    [record] = _read_back(own_broker.bootstrap, offset)
    DeadLetters("cli", producer).park([(record, deadletters.MALFORMED, "not JSON")])
    producer.close(timeout=5)
    monkeypatch.setenv("GOSHOP_KAFKA_BOOTSTRAP", own_broker.bootstrap)

    assert deadletters.main(["list"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    listed = json.loads(line)
    assert (listed["consumer"], listed["offset"], listed["replayed"]) == ("cli", offset, False)

    assert (
        deadletters.main(
            [
                "replay",
                "--dlq-topic",
                DLQ,
                "--partition",
                str(listed["dlq_partition"]),
                "--offset",
                str(listed["dlq_offset"]),
            ]
        )
        == 0
    )
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["replayed_to"]["topic"] == ORDERS_TOPIC
    (entry,) = read_parked(own_broker.bootstrap, [DLQ])
    assert entry.as_json()["replayed"] is True
    again = ["replay", "--dlq-topic", DLQ, "--partition", str(entry.dlq_partition), "--offset", str(entry.dlq_offset)]
    assert deadletters.main(again) == 1
    assert "has not failed again" in capsys.readouterr().err

    assert deadletters.main(["replay", "--dlq-topic", DLQ, "--partition", "1", "--offset", "999"]) == 1
    assert "nothing parked" in capsys.readouterr().err


def test_listing_a_dead_letter_topic_that_does_not_exist_finds_nothing_and_creates_nothing(own_broker):
    from goshop_common.messaging.kafka import make_reader

    assert read_parked(own_broker.bootstrap, ["not-made-yet.events.dlq"]) == []
    reader = make_reader(own_broker.bootstrap)
    try:
        assert "not-made-yet.events.dlq" not in reader.topics()
    finally:
        reader.close()


def test_records_at_the_same_offset_of_two_partitions_are_told_apart(own_broker):
    from types import SimpleNamespace

    producer = make_producer(own_broker.bootstrap)
    letters = DeadLetters("partitions", producer)
    # Each the first of its dead-letter partition: both at offset 0.
    for partition in (0, 2):
        record = SimpleNamespace(
            topic=ORDERS_TOPIC, partition=partition, offset=7, key=b"k", value=b"not json", headers=[]
        )
        letters.park([(record, deadletters.MALFORMED, "not JSON")])
    second = find_parked(own_broker.bootstrap, DLQ, 2, 0)
    assert (second.partition, second.dlq_offset) == (2, 0)
    replay(producer, second)
    producer.close(timeout=5)
    replayed = {entry.dlq_partition: bool(entry.replayed_at) for entry in read_parked(own_broker.bootstrap, [DLQ])}
    assert replayed == {0: False, 2: True}


def test_the_command_with_no_broker_says_so_in_one_line_and_exits_1(monkeypatch, capsys):
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("GOSHOP_KAFKA_BOOTSTRAP", address)

    assert deadletters.main(["list"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"broker at {address} not reachable: Unable to bootstrap from {address}; "
        "is make run running? (GOSHOP_KAFKA_BOOTSTRAP)\n"
    )
