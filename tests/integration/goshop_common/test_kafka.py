"""goshop_common.messaging.kafka against a real Kafka-protocol broker (Tansu, or the one
GOSHOP_KAFKA_BOOTSTRAP names). A group join takes ~3 s on Tansu, so each
consumer test joins as few groups as it can; every loop has a deadline."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kafka import KafkaAdminClient, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError

from goshop_common.messaging.kafka import (
    DELIVERY_TIMEOUT_MS,
    MAX_BLOCK_MS,
    PARTITIONS,
    broker_reachable,
    ensure_topics,
    make_consumer,
    make_producer,
)
from goshop_devtools.postgres import free_port
from goshop_domain.events import ALL_TOPICS, ORDERS_TOPIC, TOPICS, event_headers

JOIN_DEADLINE = 20  # seconds; a join takes ~3 s
SLACK = 2.5  # seconds of scheduling noise allowed on a busy 2-core box


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def partition_counts(bootstrap: str, topics) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(topics)) if t["error_code"] == 0}
    finally:
        admin.close()


def poll_until(consumer, done, deadline: float) -> list:
    """Every record polled until ``done(records)`` or the deadline, keeping
    the batches that come back with the group join."""
    records = []
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
        if done(records):
            return records
    pytest.fail(f"gave up waiting; got {len(records)} records")


@pytest.fixture
def producer(kafka_broker):
    producer = make_producer(kafka_broker.bootstrap)
    yield producer
    producer.close(timeout=5)


def test_ensure_topics_creates_missing_topics_with_three_partitions_and_is_idempotent(kafka_broker):
    topics = [unique("test.a"), unique("test.b")]

    ensure_topics(kafka_broker.bootstrap, topics=topics)
    ensure_topics(kafka_broker.bootstrap, topics=topics)

    assert partition_counts(kafka_broker.bootstrap, topics) == {t: 3 for t in topics}
    assert partition_counts(kafka_broker.bootstrap, TOPICS) == {t: PARTITIONS for t in TOPICS}


def test_ensure_topics_refuses_a_topic_that_exists_with_another_partition_count(kafka_broker):
    topic = unique("test.one-partition")
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    finally:
        admin.close()

    with pytest.raises(RuntimeError, match="partition count"):
        ensure_topics(kafka_broker.bootstrap, topics=[topic], timeout=10)


def test_a_record_produced_before_the_group_join_arrives_with_key_value_and_headers(kafka_broker, producer):
    # Produced before the consumer exists: it comes back in the poll() that
    # completes the join, and a consumer that waits for assignment() first and
    # drops that batch (or starts at "latest") would never see it.
    key = unique("order").encode()
    event_id = uuid.uuid4()
    headers = event_headers("order.created", event_id, "req-123")
    producer.send(ORDERS_TOPIC, key=key, value=b'{"event": "order.created"}', headers=headers).get(timeout=10)

    consumer = make_consumer(kafka_broker.bootstrap, unique("group"), [ORDERS_TOPIC])
    try:
        records = poll_until(consumer, lambda rs: any(r.key == key for r in rs), time.monotonic() + JOIN_DEADLINE)
    finally:
        consumer.close()

    (record,) = [r for r in records if r.key == key]
    assert record.value == b'{"event": "order.created"}'
    assert record.headers == [
        ("event-type", b"order.created"),
        ("event-id", str(event_id).encode()),
        ("request-id", b"req-123"),
    ]


def test_records_with_the_same_key_land_on_one_partition_in_send_order(kafka_broker, producer):
    keys = [unique("order").encode() for _ in range(12)]
    futures = [(key, n, producer.send(ORDERS_TOPIC, key=key, value=b"%d" % n)) for n in range(4) for key in keys]
    producer.flush(timeout=10)
    sent = [(key, n, future.get(timeout=10)) for key, n, future in futures]

    for key in keys:
        mine = [(n, meta) for k, n, meta in sent if k == key]
        assert len({meta.partition for _, meta in mine}) == 1
        assert [meta.offset for _, meta in mine] == sorted(meta.offset for _, meta in mine)
    assert len({meta.partition for _, _, meta in sent}) > 1


def test_a_new_group_member_resumes_after_the_offsets_committed_by_the_last(kafka_broker, producer):
    topic = unique("test.commits")
    ensure_topics(kafka_broker.bootstrap, topics=[topic])
    key = unique("order").encode()
    for n in range(6):
        producer.send(topic, key=key, value=b"%d" % n)
    producer.flush(timeout=10)
    group = unique("group")

    first = make_consumer(kafka_broker.bootstrap, group, [topic])
    try:
        seen = poll_until(first, lambda rs: len(rs) >= 6, time.monotonic() + JOIN_DEADLINE)
        processed = seen[:3]
        last = processed[-1]
        first.commit({TopicPartition(topic, last.partition): OffsetAndMetadata(last.offset + 1, "", -1)})
    finally:
        first.close()
    assert [r.value for r in processed] == [b"0", b"1", b"2"]

    second = make_consumer(kafka_broker.bootstrap, group, [topic])
    try:
        resumed = poll_until(second, lambda rs: len(rs) >= 3, time.monotonic() + JOIN_DEADLINE)
        time.sleep(0.3)
        resumed += [r for batch in second.poll(timeout_ms=300).values() for r in batch]
    finally:
        second.close()
    assert [r.value for r in resumed] == [b"3", b"4", b"5"]


def test_broker_reachable_is_true_only_while_a_broker_answers(own_broker):
    assert broker_reachable(own_broker.bootstrap) is True

    started = time.monotonic()
    assert broker_reachable(f"127.0.0.1:{free_port()}", timeout=1.0) is False
    assert time.monotonic() - started < 1.0 + SLACK

    own_broker.pause()
    started = time.monotonic()
    assert broker_reachable(own_broker.bootstrap, timeout=1.0) is False
    assert time.monotonic() - started < 1.0 + SLACK

    own_broker.resume()
    assert broker_reachable(own_broker.bootstrap) is True


def test_broker_reachable_does_not_raise_on_a_malformed_bootstrap():
    assert broker_reachable("no-port-here", timeout=0.5) is False


def test_sends_to_a_stopped_broker_fail_in_bounded_time_and_producers_deliver_after_restart(own_broker):
    producer = make_producer(own_broker.bootstrap)
    try:
        producer.send(ORDERS_TOPIC, key=b"k", value=b"before").get(timeout=10)
        own_broker.stop()

        started = time.monotonic()
        future = producer.send(ORDERS_TOPIC, key=b"k", value=b"while-down")
        with pytest.raises(KafkaError) as failure:
            future.get(timeout=DELIVERY_TIMEOUT_MS / 1000 + 10)
        assert time.monotonic() - started < DELIVERY_TIMEOUT_MS / 1000 + SLACK
        assert "Timeout after waiting" not in str(failure.value)  # the send failed, not our wait

        started = time.monotonic()
        with pytest.raises(KafkaTimeoutError):
            make_producer(own_broker.bootstrap)
        assert time.monotonic() - started < MAX_BLOCK_MS / 1000 + SLACK

        own_broker.start()
        ensure_topics(own_broker.bootstrap, ALL_TOPICS)
        # A relay keeps its producer: it must work again once the broker is
        # back, although the broker forgot it (memory storage).
        kept = producer.send(ORDERS_TOPIC, key=b"k", value=b"after").get(timeout=10)
    finally:
        producer.close(timeout=5)
    producer = make_producer(own_broker.bootstrap)
    try:
        fresh = producer.send(ORDERS_TOPIC, key=b"k", value=b"after, new producer").get(timeout=10)
    finally:
        producer.close(timeout=5)
    assert (kept.offset, fresh.offset) == (0, 1)  # the restarted broker started empty


def test_a_send_to_a_frozen_broker_fails_in_bounded_time(own_broker):
    producer = make_producer(own_broker.bootstrap)
    try:
        producer.send(ORDERS_TOPIC, key=b"k", value=b"before").get(timeout=10)
        own_broker.pause()

        started = time.monotonic()
        future = producer.send(ORDERS_TOPIC, key=b"k", value=b"while-frozen")
        with pytest.raises(KafkaError) as failure:
            future.get(timeout=DELIVERY_TIMEOUT_MS / 1000 + 10)
        assert time.monotonic() - started < DELIVERY_TIMEOUT_MS / 1000 + SLACK
        assert "Timeout after waiting" not in str(failure.value)
    finally:
        own_broker.resume()
        producer.close(timeout=5)


def test_a_consumer_that_cannot_reach_the_broker_fails_fast_and_leaves_no_io_thread():
    bootstrap = f"127.0.0.1:{free_port()}"
    threads_before = set(threading.enumerate())

    started = time.monotonic()
    with pytest.raises(KafkaTimeoutError):
        make_consumer(bootstrap, unique("group"), [ORDERS_TOPIC], bootstrap_timeout_ms=1000)
    with pytest.raises(KafkaTimeoutError):
        ensure_topics(bootstrap, ALL_TOPICS, timeout=1)
    assert time.monotonic() - started < 2 + SLACK

    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(threading.enumerate()) - threads_before == set()


def test_the_tests_own_broker_is_used_with_its_broker_profile(kafka_broker):
    # tests/plugins/broker.py selects the embedded broker's profile for this
    # process's clients (goshop_common.messaging.broker_profiles); a broker
    # GOSHOP_KAFKA_BOOTSTRAP names is used as the environment says.
    from goshop_devtools.broker import PROFILE, EmbeddedBroker

    if not isinstance(kafka_broker, EmbeddedBroker):
        pytest.skip("a broker of GOSHOP_KAFKA_BOOTSTRAP's")
    assert kafka_broker.client_env["GOSHOP_KAFKA_BROKER_PROFILE"] == PROFILE
    producer = make_producer(kafka_broker.bootstrap)
    try:
        assert producer.config["enable_idempotence"] is False
        assert producer.config["max_in_flight_requests_per_connection"] == 1
    finally:
        producer.close(timeout=2)
