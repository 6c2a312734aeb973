"""A consumer's batch over the real broker and database: one plain transaction
while every handler succeeds, savepoints per event only to isolate a failure."""

import datetime as dt
import json
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from goshop_common.db import prepared
from goshop_common.messaging.consumer import EventConsumer
from goshop_common.messaging.deadletters import DeadLetters
from goshop_common.messaging.inbox import inbox_table
from goshop_common.messaging.kafka import make_consumer, make_producer
from goshop_domain.events import ORDER_CREATED, ORDERS_TOPIC, event_headers
from tests.saga_runtime import wait_until
from tests.support import scratch_schema

SCHEMA = "consumer_batch_test"
METADATA = sa.MetaData(schema=SCHEMA)
INBOX = inbox_table(METADATA)
EFFECTS = sa.Table("effects", METADATA, sa.Column("event_id", sa.Uuid, primary_key=True))
AT = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


@pytest.fixture
def scratch(settings):
    with scratch_schema(settings, METADATA) as engine:
        yield engine


def produce(bootstrap: str, count: int, partitions: int | None = None) -> list[str]:
    """``count`` events; on one key (one partition, in order, so they come in
    one batch), or ``count`` on each of the first ``partitions``."""
    producer = make_producer(bootstrap)
    ids = []
    for partition in range(partitions) if partitions else [None]:
        for _ in range(count):
            body = order_created()
            event_id = body["event_id"]
            value = json.dumps(body).encode()
            headers = event_headers(ORDER_CREATED.name, event_id)
            if partition is None:
                producer.send(ORDERS_TOPIC, key=b"batch", value=value, headers=headers)
            else:
                producer.send(ORDERS_TOPIC, value=value, partition=partition, headers=headers)
            ids.append(event_id)
    producer.flush(10)
    producer.close(timeout=5)
    return ids


def order_created() -> dict:
    return ORDER_CREATED.build(
        AT, order_id=uuid.uuid4(), user_id=uuid.uuid4(), amount_cents=100, currency="RUB", status="new"
    )


def dead_letters(bootstrap: str, name: str) -> DeadLetters:
    return DeadLetters(name, make_producer(bootstrap))


def consume(bootstrap: str, engine: sa.Engine, handler, expected: int) -> tuple[EventConsumer, list[str]]:
    statements: list[str] = []
    sa.event.listen(
        engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(prepared.statement_of(sql) or "")
    )
    kafka = make_consumer(bootstrap, f"batch-test-{uuid.uuid4().hex[:8]}", [ORDERS_TOPIC])
    worker = EventConsumer(
        "batch-test", engine, kafka, INBOX, handler, dead_letters=dead_letters(bootstrap, "batch-test")
    )
    thread = threading.Thread(target=worker.run, kwargs={"poll_timeout_ms": 100})
    thread.start()
    try:
        wait_until(lambda: worker.stats.consumed >= expected, timeout=30, message="every event consumed")
    finally:
        worker.stop()
        thread.join(10)
    return worker, statements


def recorded(engine: sa.Engine, table: sa.Table) -> set[str]:
    with engine.connect() as connection:
        return {str(row.event_id) for row in connection.execute(sa.select(table.c.event_id))}


def test_a_batch_whose_handlers_all_succeed_takes_no_savepoint(own_broker, scratch):
    ids = produce(own_broker.bootstrap, 3)

    worker, statements = consume(own_broker.bootstrap, scratch, record_effect, 3)
    assert recorded(scratch, EFFECTS) == recorded(scratch, INBOX) == set(ids)
    assert (worker.stats.consumed, worker.stats.applied, worker.stats.parked) == (3, 3, 0)
    assert not [sql for sql in statements if "SAVEPOINT" in sql.upper()]


def test_a_failing_handler_is_parked_alone_and_its_neighbours_are_applied_once(own_broker, scratch):
    first, failing, last = produce(own_broker.bootstrap, 3)

    def handler(db, batch):
        record_effect(db, batch)
        if any(str(event.event_id) == failing for event in batch):
            raise RuntimeError("a bug in the handler")

    worker, statements = consume(own_broker.bootstrap, scratch, handler, 3)
    # Its effect and its inbox row went with its savepoint: it can be replayed.
    assert recorded(scratch, EFFECTS) == recorded(scratch, INBOX) == {first, last}
    # Counted once, after the batch that committed, not for the run rolled back.
    assert (worker.stats.consumed, worker.stats.applied, worker.stats.parked) == (3, 2, 1)
    assert [sql for sql in statements if sql.upper().startswith("SAVEPOINT")]


def send(bootstrap: str, bodies: list[dict]) -> None:
    """These events, in this order, on one key (one partition, one batch)."""
    producer = make_producer(bootstrap)
    for body in bodies:
        headers = event_headers(ORDER_CREATED.name, body["event_id"])
        producer.send(ORDERS_TOPIC, key=b"batch", value=json.dumps(body).encode(), headers=headers)
    producer.flush(10)
    producer.close(timeout=5)


def inbox_inserts(statements: list[str]) -> list[str]:
    return [sql for sql in statements if sql.startswith(f"INSERT INTO {SCHEMA}.inbox")]


def test_a_plain_batch_records_every_inbox_row_in_one_statement(own_broker, scratch):
    ids = produce(own_broker.bootstrap, 5)
    worker, statements = consume(own_broker.bootstrap, scratch, record_effect, 5)
    assert recorded(scratch, EFFECTS) == recorded(scratch, INBOX) == set(ids)
    assert worker.stats.applied == 5
    # Five events came in one poll; however they were split into batches,
    # each batch wrote its inbox rows in one statement.
    assert 1 <= len(inbox_inserts(statements)) < 5


def test_an_event_twice_in_one_batch_is_applied_once(own_broker, scratch):
    first, second = order_created(), order_created()
    send(own_broker.bootstrap, [first, second, first])
    worker, _statements = consume(own_broker.bootstrap, scratch, record_effect, 3)
    assert recorded(scratch, EFFECTS) == recorded(scratch, INBOX) == {first["event_id"], second["event_id"]}
    assert (worker.stats.applied, worker.stats.duplicates, worker.stats.parked) == (2, 1, 0)


class Together:
    """A handler that says what batches it was given."""

    def __init__(self):
        self.batches: list[list[str]] = []

    def __call__(self, db, batch):
        self.batches.append([str(event.event_id) for event in batch])
        record_effect(db, batch)


def test_a_handler_that_takes_a_batch_gets_its_first_deliveries_in_order(own_broker, scratch):
    bodies = [order_created() for _ in range(3)]
    with scratch.begin() as db:  # the second was applied before
        db.execute(
            INBOX.insert(),
            {
                "event_id": uuid.UUID(bodies[1]["event_id"]),
                "event_type": ORDER_CREATED.name,
                "topic": ORDERS_TOPIC,
                "partition": 0,
                "offset": 0,
            },
        )
    send(own_broker.bootstrap, bodies)
    handler = Together()
    worker, _statements = consume(own_broker.bootstrap, scratch, handler, 3)
    applied = [event_id for batch in handler.batches for event_id in batch]
    assert applied == [bodies[0]["event_id"], bodies[2]["event_id"]]
    assert (worker.stats.applied, worker.stats.duplicates) == (2, 1)


def test_a_batch_handler_that_fails_is_run_event_by_event_and_only_the_bad_one_is_parked(own_broker, scratch):
    bodies = [order_created() for _ in range(3)]
    bad = bodies[1]["event_id"]

    class FailsOnOne(Together):
        def __call__(self, db, batch):
            if any(str(event.event_id) == bad for event in batch):
                raise RuntimeError("a bug in the handler")
            super().__call__(db, batch)

    send(own_broker.bootstrap, bodies)
    worker, _statements = consume(own_broker.bootstrap, scratch, FailsOnOne(), 3)
    assert recorded(scratch, EFFECTS) == recorded(scratch, INBOX) == {bodies[0]["event_id"], bodies[2]["event_id"]}
    assert (worker.stats.applied, worker.stats.parked) == (2, 1)


def record_effect(db, batch):
    db.execute(EFFECTS.insert(), [{"event_id": event.event_id} for event in batch])


def consume_with_doorbell(bootstrap, engine, settings, handler):
    from goshop_common.db.listen import Listener
    from goshop_common.messaging.outbox import PUBLISHED_CHANNEL

    kafka = make_consumer(bootstrap, f"doorbell-test-{uuid.uuid4().hex[:8]}", [ORDERS_TOPIC], fetch_max_wait_ms=10)
    doorbell = Listener(settings.database_url, PUBLISHED_CHANNEL, "doorbell-test")
    worker = EventConsumer(
        "doorbell-test", engine, kafka, INBOX, handler, doorbell, dead_letters=dead_letters(bootstrap, "doorbell-test")
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    wait_until(lambda: bool(kafka.assignment()), timeout=30, message="partitions assigned")
    return worker, thread


def ring(engine, topic):
    from goshop_common.messaging.outbox import PUBLISHED_CHANNEL

    with engine.begin() as connection:
        connection.execute(sa.select(sa.func.pg_notify(PUBLISHED_CHANNEL, topic)))


def test_a_waiting_consumer_fetches_when_the_outboxer_rings_for_its_topic(own_broker, scratch, settings, monkeypatch):
    from goshop_common.messaging import consumer as consumer_module

    # Left alone, the consumer would not look again for a minute.
    monkeypatch.setattr(consumer_module, "DOORBELL_IDLE_SECONDS", 60.0)
    worker, thread = consume_with_doorbell(own_broker.bootstrap, scratch, settings, record_effect)
    try:
        time.sleep(0.5)  # into its wait for the ring
        ids = produce(own_broker.bootstrap, 2)
        ring(scratch, "payments.events")  # another topic's ring: not ours
        ring(scratch, ORDERS_TOPIC)
        wait_until(lambda: recorded(scratch, EFFECTS) == set(ids), timeout=10, message="rung events applied")
    finally:
        worker.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_records_that_land_just_after_the_ring_are_fetched_without_waiting_for_another(
    own_broker, scratch, settings, monkeypatch
):
    from goshop_common.messaging import consumer as consumer_module

    # Left alone, the consumer would not look again for a minute.
    monkeypatch.setattr(consumer_module, "DOORBELL_IDLE_SECONDS", 60.0)
    producer = make_producer(own_broker.bootstrap)
    worker, thread = consume_with_doorbell(own_broker.bootstrap, scratch, settings, record_effect)
    try:
        time.sleep(0.5)  # into its wait for the ring
        body = order_created()
        # The ring first, the record a poll later: as when the fetch that
        # finds the rung records is answered after the first poll's end.
        ring(scratch, ORDERS_TOPIC)
        time.sleep(consumer_module.DOORBELL_POLL_MS / 1000 * 1.5)
        headers = event_headers(ORDER_CREATED.name, body["event_id"])
        producer.send(ORDERS_TOPIC, key=b"late", value=json.dumps(body).encode(), headers=headers)
        producer.flush(10)
        wait_until(lambda: recorded(scratch, EFFECTS) == {body["event_id"]}, timeout=5, message="late event applied")
    finally:
        producer.close(timeout=5)
        worker.stop()
        thread.join(10)


def test_a_record_nobody_rang_for_is_fetched_at_the_consumers_own_look(own_broker, scratch, settings, monkeypatch):
    from goshop_common.messaging import consumer as consumer_module

    monkeypatch.setattr(consumer_module, "DOORBELL_IDLE_SECONDS", 0.5)
    worker, thread = consume_with_doorbell(own_broker.bootstrap, scratch, settings, record_effect)
    try:
        time.sleep(0.5)
        ids = produce(own_broker.bootstrap, 2)  # a producer that is not the outboxer: no ring
        wait_until(lambda: recorded(scratch, EFFECTS) == set(ids), timeout=10, message="unrung events applied")
    finally:
        worker.stop()
        thread.join(10)


def test_every_partition_of_a_poll_has_its_offset_committed_after_its_batch(own_broker, scratch):
    from kafka import KafkaConsumer, TopicPartition

    from goshop_common.messaging.kafka import PARTITIONS

    ids = produce(own_broker.bootstrap, 2, partitions=PARTITIONS)
    group = f"offsets-test-{uuid.uuid4().hex[:8]}"
    kafka = make_consumer(own_broker.bootstrap, group, [ORDERS_TOPIC])
    worker = EventConsumer(
        "offsets-test", scratch, kafka, INBOX, record_effect, dead_letters=dead_letters(own_broker.bootstrap, "offsets")
    )
    thread = threading.Thread(target=worker.run, kwargs={"poll_timeout_ms": 100})
    thread.start()
    try:
        wait_until(lambda: worker.stats.consumed >= len(ids), timeout=30, message="every event consumed")
    finally:
        worker.stop()
        thread.join(10)
    assert recorded(scratch, EFFECTS) == set(ids)
    reader = KafkaConsumer(bootstrap_servers=own_broker.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        committed = {p: reader.committed(TopicPartition(ORDERS_TOPIC, p)) for p in range(PARTITIONS)}
    finally:
        reader.close()
    assert committed == dict.fromkeys(range(PARTITIONS), 2)


def test_a_database_outage_sends_the_consumer_back_to_poll_after_one_failed_batch(own_broker, scratch):
    """Trying every partition's batch of a poll against a database that does
    not answer (seconds each) would keep the consumer from polling for longer
    than max_poll_interval_ms, and a member that does not poll in time is made
    to leave its group."""
    from sqlalchemy.exc import OperationalError

    from goshop_common.messaging.kafka import PARTITIONS

    produce(own_broker.bootstrap, 1, partitions=PARTITIONS)
    seen: list[str] = []

    def handler(db, batch):
        seen.append("try")
        raise OperationalError("INSERT …", {}, ConnectionError("the database is away"))

    kafka = make_consumer(own_broker.bootstrap, f"outage-test-{uuid.uuid4().hex[:8]}", [ORDERS_TOPIC])
    polled = kafka.poll

    def poll(**kwargs):
        batches = polled(**kwargs)
        if batches:
            seen.append("poll")
        return batches

    kafka.poll = poll
    worker = EventConsumer(
        "outage-test", scratch, kafka, INBOX, handler, dead_letters=dead_letters(own_broker.bootstrap, "outage")
    )
    thread = threading.Thread(target=worker.run, kwargs={"poll_timeout_ms": 100})
    thread.start()
    try:
        wait_until(lambda: seen.count("try") >= 4, timeout=30, message="four tries")
    finally:
        worker.stop()
        thread.join(10)
    # Each failed try came from a poll of its own: none waited for another's.
    assert all(i > 0 and seen[i - 1] == "poll" for i, step in enumerate(seen) if step == "try"), seen
    assert recorded(scratch, INBOX) == set()


@pytest.fixture
def one_partition(own_broker, scratch):
    """Three events on one partition (offsets 0, 1, 2), read back by a
    reader assigned to it, and a consumer around that reader."""
    from kafka import TopicPartition

    from goshop_common.messaging.kafka import make_reader

    produce(own_broker.bootstrap, 3)  # one key: one partition
    reader = make_reader(own_broker.bootstrap)
    worker = EventConsumer(
        "gap-test", scratch, reader, INBOX, record_effect, dead_letters=dead_letters(own_broker.bootstrap, "gap-test")
    )
    try:
        partition = next(
            TopicPartition(ORDERS_TOPIC, p) for p in reader.partitions_for_topic(ORDERS_TOPIC) if _holds(own_broker, p)
        )
        reader.assign([partition])
        reader.seek(partition, 0)
        yield reader, worker, partition, poll_all(reader, partition, 3)
    finally:
        reader.close()


def test_a_poll_that_skips_an_offset_is_cut_there_and_the_client_fetches_from_it_again(one_partition):
    """make run's broker can hand out a later batch before an earlier one is
    stored (two producers on one partition); the records past the hole are
    not taken, and the next fetch starts at the missing offset."""
    reader, worker, partition, (first, second, third) = one_partition
    # The poll as the broker showed it: offset 1 not there yet.
    kept = worker._before_gap(partition, [first, third], expected=0)
    assert [r.offset for r in kept] == [0]
    assert reader.position(partition) == 1
    assert [r.offset for r in poll_all(reader, partition, 2)] == [1, 2]
    # Nothing missing: the whole poll, and the client's position untouched.
    assert worker._before_gap(partition, [second, third], expected=1) == [second, third]
    assert reader.position(partition) == 3


def test_an_offset_missing_past_the_patience_is_passed_over_and_logged_as_an_error(one_partition, monkeypatch, caplog):
    from goshop_common.messaging import consumer as consumer_module

    reader, worker, partition, (first, _second, third) = one_partition
    assert worker._before_gap(partition, [first, third], expected=0) == [first]  # the first miss waits
    monkeypatch.setattr(consumer_module, "GAP_PATIENCE_SECONDS", 0.0)
    reader.seek(partition, 3)
    with caplog.at_level("ERROR", logger="goshop.consumer"):
        assert worker._before_gap(partition, [first, third], expected=0) == [first, third]
    assert reader.position(partition) == 3  # not sent back
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["offset never appeared; passing over it"]


def _holds(broker, partition: int) -> bool:
    """Whether ``partition`` of the orders topic has records (produce's one key lands on one)."""
    from kafka import TopicPartition

    from goshop_common.messaging.kafka import make_reader

    reader = make_reader(broker.bootstrap)
    try:
        tp = TopicPartition(ORDERS_TOPIC, partition)
        return reader.end_offsets([tp])[tp] > 0
    finally:
        reader.close()


def poll_all(reader, partition, count: int) -> list:
    records: list = []
    deadline = time.monotonic() + 15
    while len(records) < count and time.monotonic() < deadline:
        records += reader.poll(timeout_ms=200).get(partition, [])
    assert len(records) == count, records
    return records
