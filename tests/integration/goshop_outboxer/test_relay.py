"""The outbox relay against the migrated database and a real broker: per-key
order on the topic, a failing row holding back only its own key, and its key
catching up once the row is fixed. The failure is a real one: a topic name
Kafka rejects makes the real producer refuse the record."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition

from goshop_common.messaging.kafka import PARTITIONS, ensure_topics, make_producer
from goshop_orders.models import OUTBOX
from goshop_outboxer.relay import Relay

BACKOFF_BASE_MS = 60_000  # a failed row stays not-due for the rest of the test
READ_DEADLINE = 20  # seconds


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def producer(kafka_broker):
    producer = make_producer(kafka_broker.bootstrap)
    yield producer
    producer.close(timeout=5)


@pytest.fixture
def topic(kafka_broker):
    name = unique("test.outbox")
    ensure_topics(kafka_broker.bootstrap, topics=[name])
    return name


@pytest.fixture
def relay(clean_db, producer):
    return Relay(clean_db, OUTBOX, producer, batch_size=50, backoff_base_ms=BACKOFF_BASE_MS, backoff_cap_seconds=600)


def add_row(engine, topic: str, key: str, seq: int) -> int:
    event_id = uuid.uuid4()
    with engine.begin() as connection:
        return connection.execute(
            OUTBOX.insert()
            .values(
                event_id=event_id,
                topic=topic,
                key=key,
                event_type="test.event",
                payload={"event_id": str(event_id), "event": "test.event", "key": key, "seq": seq},
            )
            .returning(OUTBOX.c.id)
        ).scalar_one()


def outbox_row(engine, row_id: int):
    with engine.connect() as connection:
        return connection.execute(sa.select(OUTBOX).where(OUTBOX.c.id == row_id)).one()


def pending(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).select_from(OUTBOX).where(OUTBOX.c.published_at.is_(None))
        ).scalar_one()


def relay_until_drained(relay, engine, passes: int = 20) -> None:
    for _ in range(passes):
        if relay.relay_once() == 0 and pending(engine) == 0:
            return
    pytest.fail(f"{pending(engine)} rows still pending after {passes} passes")


def read_topic(bootstrap: str, topic: str, expected: int) -> list:
    """Every record of ``topic`` from the beginning, once ``expected`` have arrived
    (then a short extra poll, so a record that should not be there shows up)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records = []
        deadline = time.monotonic() + READ_DEADLINE
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        assert len(records) >= expected, f"only {len(records)} of {expected} records arrived"
        return records
    finally:
        consumer.close()


def seqs_by_key(records) -> dict[str, list[int]]:
    """Each key's ``seq`` values in the order the records sit in their partition."""
    by_key: dict[str, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(record.key.decode(), []).append(json.loads(record.value)["seq"])
    return by_key


def test_rows_of_one_key_reach_the_topic_in_the_order_they_were_written(relay, clean_db, topic, kafka_broker):
    key, other = unique("order"), unique("order")
    ids = []
    for seq in range(1, 6):
        ids.append(add_row(clean_db, topic, key, seq))
        add_row(clean_db, topic, other, seq)

    # Only each key's oldest pending row is claimed in a pass.
    assert relay.relay_once() == 2
    relay_until_drained(relay, clean_db)

    records = read_topic(kafka_broker.bootstrap, topic, expected=10)
    assert seqs_by_key(records) == {key: [1, 2, 3, 4, 5], other: [1, 2, 3, 4, 5]}
    assert len({r.partition for r in records if r.key.decode() == key}) == 1
    published = [outbox_row(clean_db, row_id).published_at for row_id in ids]
    assert published == sorted(published)
    assert relay.stats.published == 10
    assert relay.stats.failed == 0


def test_a_failing_row_holds_back_only_its_own_key_and_its_key_catches_up_once_fixed(
    relay, clean_db, topic, kafka_broker
):
    key_a, key_b, key_c = unique("order-a"), unique("order-b"), unique("order-c")
    # A's first row is claimed first in the batch: its failure must not spill onto B or C.
    a1 = add_row(clean_db, "not a valid topic!", key_a, 1)
    a2 = add_row(clean_db, topic, key_a, 2)
    b1 = add_row(clean_db, topic, key_b, 1)
    b2 = add_row(clean_db, topic, key_b, 2)
    c1 = add_row(clean_db, topic, key_c, 1)

    before = relay.clock()
    assert relay.relay_once() == 3  # A1, B1, C1: the heads of their keys
    assert relay.stats.published == 2
    assert relay.stats.failed == 1

    failed = outbox_row(clean_db, a1)
    assert failed.published_at is None
    assert failed.attempts == 1
    assert failed.last_error.startswith("ValueError: ")
    assert "not a valid topic!" in failed.last_error
    assert (failed.next_attempt_at - before).total_seconds() >= BACKOFF_BASE_MS / 1000 - 1
    assert outbox_row(clean_db, b1).published_at is not None
    assert outbox_row(clean_db, c1).published_at is not None
    assert outbox_row(clean_db, b1).attempts == outbox_row(clean_db, c1).attempts == 0

    # B goes on; A's later row waits behind its failed head, even though it is valid.
    assert relay.relay_once() == 1
    assert outbox_row(clean_db, b2).published_at is not None
    assert relay.relay_once() == 0
    assert outbox_row(clean_db, a2).published_at is None
    assert outbox_row(clean_db, a2).attempts == 0
    assert relay.next_due_in() > BACKOFF_BASE_MS / 1000 - 5  # only A's backed-off head pends

    records = read_topic(kafka_broker.bootstrap, topic, expected=3)
    assert seqs_by_key(records) == {key_b: [1, 2], key_c: [1]}

    # Fixed: a valid topic, due now. A's rows go out, in order.
    with clean_db.begin() as connection:
        connection.execute(OUTBOX.update().where(OUTBOX.c.id == a1).values(topic=topic, next_attempt_at=sa.func.now()))
    assert relay.next_due_in() == 0
    relay_until_drained(relay, clean_db)

    records = read_topic(kafka_broker.bootstrap, topic, expected=5)
    assert seqs_by_key(records) == {key_a: [1, 2], key_b: [1, 2], key_c: [1]}
    assert outbox_row(clean_db, a1).attempts == 1
    assert outbox_row(clean_db, a1).published_at <= outbox_row(clean_db, a2).published_at
    assert relay.stats.published == 5
    assert relay.stats.failed == 1


def test_a_healthy_outboxer_stops_asking_when_the_next_row_is_due_until_a_publish_fails(clean_db, producer, topic):
    from goshop_outboxer.worker import Outboxer

    relay = Relay(clean_db, OUTBOX, producer, batch_size=50, backoff_base_ms=1_000, backoff_cap_seconds=600)
    outboxer = Outboxer([relay], None, poll_seconds=5.0)
    asked = []
    sa.event.listen(clean_db, "before_cursor_execute", lambda _c, _cur, sql, *_: asked.append("min(" in sql))
    # At start a row may be in backoff from before: it asks once, learns there is none.
    assert outboxer._sleep_for() == 5.0
    assert asked.count(True) == 1
    add_row(clean_db, topic, unique("order"), 1)
    assert relay.relay_once() == 1
    assert outboxer._sleep_for() == 5.0
    assert asked.count(True) == 1  # nothing failed since: not asked again
    add_row(clean_db, "not a valid topic!", unique("order"), 1)
    assert relay.relay_once() == 1
    assert relay.stats.failed == 1
    # Its retry is due in about a second, before the slow poll: woken for it.
    assert 0.5 < outboxer._sleep_for() <= 1.0
    assert asked.count(True) == 2


def test_the_relay_rings_for_each_topic_it_published_to_once_its_marks_commit(relay, clean_db, topic, settings):
    from goshop_common.db.listen import Listener
    from goshop_common.messaging.outbox import PUBLISHED_CHANNEL

    doorbell = Listener(settings.database_url, PUBLISHED_CHANNEL, "relay-ring-test")
    try:
        assert doorbell.wait(0.05) == frozenset()  # connected and listening
        add_row(clean_db, topic, unique("order"), 1)
        add_row(clean_db, topic, unique("order"), 1)
        add_row(clean_db, "not a valid topic!", unique("order"), 1)
        assert relay.relay_once() == 3
        assert doorbell.wait(5) == {topic}  # once for the topic, none for the failed row's
        assert doorbell.wait(0.2) == frozenset()
    finally:
        doorbell.close()
