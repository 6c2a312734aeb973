"""Operators list the events consumers parked and replay them, through the
ops API: the operator's token required, bad input a JSON 4xx, a broker that
does not answer a 503, and a replay that applies once however often it is
asked for."""

import json
import socket
import threading
import uuid

import pytest
import sqlalchemy as sa

from goshop_common.messaging.consumer import EventConsumer
from goshop_common.messaging.deadletters import DeadLetters
from goshop_common.messaging.inbox import inbox_table
from goshop_common.messaging.kafka import make_consumer, make_producer
from goshop_domain.events import ORDER_CREATED, ORDERS_TOPIC, event_headers
from tests.integration.goshop_ops.conftest import OPERATOR, OPS_TOKEN, make_ops_app, park_record
from tests.saga_runtime import wait_until
from tests.support import bearer, scratch_schema

DLQ = f"{ORDERS_TOPIC}.dlq"
SCHEMA = "ops_parked_test"
METADATA = sa.MetaData(schema=SCHEMA)
INBOX = inbox_table(METADATA)
EFFECTS = sa.Table("effects", METADATA, sa.Column("event_id", sa.Uuid, primary_key=True))


def order_created() -> dict:
    import datetime as dt

    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    return ORDER_CREATED.build(
        at, order_id=uuid.uuid4(), user_id=uuid.uuid4(), amount_cents=7, currency="RUB", status="new"
    )


def park_one(bootstrap: str, consumer: str) -> dict:
    """A record on orders.events, parked by ``consumer`` as a handler's bug; its body."""
    body = order_created()
    park_record(bootstrap, consumer, json.dumps(body).encode(), event_headers(body["event"], body["event_id"]))
    return body


def mine(response, consumer: str) -> list[dict]:
    return [entry for entry in response.json["parked"] if entry["consumer"] == consumer]


CALLS = [("GET", "/v1/ops/parked"), ("POST", f"/v1/ops/parked/{DLQ}/0/0/replay")]


def call(client, method, path, headers, status):
    if method == "GET":
        return client.get(path, headers=headers, status=status)
    return client.post(path, headers=headers, status=status)


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong-token"), bearer(OPS_TOKEN[:-1]), {"Authorization": f"Basic {OPS_TOKEN}"}],
    ids=["anonymous", "wrong", "prefix", "basic"],
)
def test_parked_events_are_refused_to_callers_without_the_ops_token(ops_client, headers):
    for method, path in CALLS:
        response = call(ops_client, method, path, headers, 401)
        assert response.json == {"error": "unauthorized"}
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_customers_access_token_cannot_list_or_replay_parked_events(ops_client, customer):
    for method, path in CALLS:
        assert call(ops_client, method, path, customer["headers"], 401).json == {"error": "unauthorized"}


def test_the_operator_lists_a_parked_event_with_where_it_came_from_and_why(ops_client, kafka_broker):
    consumer = f"ops-list-{uuid.uuid4().hex[:8]}"
    body = park_one(kafka_broker.bootstrap, consumer)
    (entry,) = mine(ops_client.get("/v1/ops/parked", headers=OPERATOR), consumer)
    assert entry["dlq_topic"] == DLQ
    assert (entry["topic"], entry["partition"]) == (ORDERS_TOPIC, 0)
    assert (entry["reason"], entry["error"]) == ("handler_error", "RuntimeError: boom")
    assert (entry["event_id"], entry["event_type"]) == (body["event_id"], "order.created")
    assert (entry["copies"], entry["replayed"], entry["replayed_at"]) == (1, False, [])
    assert entry["parked_at"].endswith("Z")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/ops/parked/orders.events/0/0/replay",  # not a dead-letter topic
        "/v1/ops/parked/nope.dlq/0/0/replay",
        f"/v1/ops/parked/{DLQ}/0/abc/replay",
        f"/v1/ops/parked/{DLQ}/0/-1/replay",
        f"/v1/ops/parked/{DLQ}/0/1.5/replay",
        f"/v1/ops/parked/{DLQ}/0/%D9%A3/replay",  # an Arabic-Indic three: a digit, not an offset
        f"/v1/ops/parked/{DLQ}/0/{10**30}/replay",
        f"/v1/ops/parked/{DLQ}/0/999999999/replay",  # nothing parked there
        f"/v1/ops/parked/{DLQ}/x/0/replay",
        f"/v1/ops/parked/{DLQ}/-1/0/replay",
        f"/v1/ops/parked/{DLQ}/99/0/replay",  # no such partition
    ],
    ids=[
        "plain-topic",
        "unknown-topic",
        "letters",
        "negative",
        "fraction",
        "unicode-digit",
        "huge",
        "absent",
        "partition-letters",
        "partition-negative",
        "partition-absent",
    ],
)
def test_a_replay_of_nothing_parked_there_is_a_json_404(ops_client, path):
    assert ops_client.post(path, headers=OPERATOR, status=404).json == {"error": "parked event not found"}


def test_the_listing_says_a_replayed_event_was_replayed(ops_client, kafka_broker):
    consumer = f"ops-marked-{uuid.uuid4().hex[:8]}"
    park_one(kafka_broker.bootstrap, consumer)
    (entry,) = mine(ops_client.get("/v1/ops/parked", headers=OPERATOR), consumer)
    answer = ops_client.post(
        f"/v1/ops/parked/{DLQ}/{entry['dlq_partition']}/{entry['dlq_offset']}/replay", headers=OPERATOR, status=202
    ).json
    assert answer["parked"]["dlq_offset"] == entry["dlq_offset"]
    assert (answer["replayed_to"]["topic"], answer["replayed_to"]["partition"]) == (ORDERS_TOPIC, 0)
    (listed,) = mine(ops_client.get("/v1/ops/parked", headers=OPERATOR), consumer)
    assert listed["replayed"] is True
    assert len(listed["replayed_at"]) == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_broker_that_does_not_answer_is_a_503_not_a_500(service_settings, web_client):
    app = make_ops_app(service_settings, ollama_url="", kafka_bootstrap=f"127.0.0.1:{_closed_port()}")
    try:
        client = web_client(app)
        for method, path in CALLS:
            response = call(client, method, path, OPERATOR, 503)
            assert response.json == {"error": "broker unavailable"}
            assert response.headers["Retry-After"]
    finally:
        app.registry.dbengine.dispose()


@pytest.fixture
def scratch(settings):
    with scratch_schema(settings, METADATA) as engine:
        yield engine


def _worker(bootstrap, engine, group, handler):
    name = "ops-replay"
    kafka = make_consumer(bootstrap, group, [ORDERS_TOPIC])
    worker = EventConsumer(
        name, engine, kafka, INBOX, handler, dead_letters=DeadLetters(name, make_producer(bootstrap))
    )
    thread = threading.Thread(target=worker.run, kwargs={"poll_timeout_ms": 100})
    thread.start()
    return worker, thread


def _stop(worker, thread):
    worker.stop()
    thread.join(15)


def _end_offset(bootstrap: str, topic: str) -> int:
    from kafka import TopicPartition

    from goshop_common.messaging.kafka import make_reader

    reader = make_reader(bootstrap)
    try:
        return sum(reader.end_offsets([TopicPartition(topic, p) for p in reader.partitions_for_topic(topic)]).values())
    finally:
        reader.close()


def test_an_event_replayed_after_the_fix_applies_once_and_a_second_replay_is_a_409_that_sends_nothing(
    service_settings, web_client, own_broker, scratch
):
    """The consumer parks it (a bug); the bug fixed, the first replay applies
    it; asking again is refused, and nothing more reaches either topic."""
    body = order_created()
    producer = make_producer(own_broker.bootstrap)
    headers = event_headers(body["event"], body["event_id"])
    producer.send(ORDERS_TOPIC, key=b"k", value=json.dumps(body).encode(), headers=headers).get(10)
    producer.close(timeout=5)
    group = f"ops-replay-{uuid.uuid4().hex[:8]}"

    def buggy(db, batch):
        raise RuntimeError("a bug")

    def fixed(db, batch):
        db.execute(EFFECTS.insert(), [{"event_id": event.event_id} for event in batch])

    worker, thread = _worker(own_broker.bootstrap, scratch, group, buggy)
    try:
        wait_until(lambda: worker.stats.parked >= 1, timeout=30, message="parked")
    finally:
        _stop(worker, thread)
    app = make_ops_app(service_settings, ollama_url="", kafka_bootstrap=own_broker.bootstrap)
    worker, thread = _worker(own_broker.bootstrap, scratch, group, fixed)
    try:
        client = web_client(app)
        (entry,) = client.get("/v1/ops/parked", headers=OPERATOR).json["parked"]
        assert (entry["event_id"], entry["error"]) == (body["event_id"], "RuntimeError: a bug")
        replay = f"/v1/ops/parked/{DLQ}/{entry['dlq_partition']}/{entry['dlq_offset']}/replay"
        client.post(replay, headers=OPERATOR, status=202)
        wait_until(lambda: worker.stats.applied >= 1, timeout=30, message="replay applied")
        ends = (_end_offset(own_broker.bootstrap, ORDERS_TOPIC), _end_offset(own_broker.bootstrap, DLQ))
        for _ in range(3):
            answer = client.post(replay, headers=OPERATOR, status=409).json
            assert answer == {"error": "already replayed: its last replay has not failed"}
        assert (_end_offset(own_broker.bootstrap, ORDERS_TOPIC), _end_offset(own_broker.bootstrap, DLQ)) == ends
        (listed,) = client.get("/v1/ops/parked", headers=OPERATOR).json["parked"]
    finally:
        _stop(worker, thread)
        app.registry.dbengine.dispose()
    with scratch.connect() as connection:
        assert {str(i) for i in connection.execute(sa.select(EFFECTS.c.event_id)).scalars()} == {body["event_id"]}
    assert (worker.stats.applied, worker.stats.duplicates, worker.stats.parked) == (1, 0, 0)
    assert (listed["replayed"], len(listed["replayed_at"])) == (True, 1)


def test_a_replay_that_fails_again_updates_its_entry_which_may_be_replayed_again(
    service_settings, web_client, own_broker, scratch
):
    body = order_created()
    producer = make_producer(own_broker.bootstrap)
    headers = event_headers(body["event"], body["event_id"])
    producer.send(ORDERS_TOPIC, key=b"k", value=json.dumps(body).encode(), headers=headers).get(10)
    producer.close(timeout=5)
    attempts = []

    def still_buggy(db, batch):
        attempts.append(1)
        raise RuntimeError(f"bug number {len(attempts)}")

    app = make_ops_app(service_settings, ollama_url="", kafka_bootstrap=own_broker.bootstrap)
    worker, thread = _worker(own_broker.bootstrap, scratch, f"ops-again-{uuid.uuid4().hex[:8]}", still_buggy)
    try:
        client = web_client(app)
        wait_until(lambda: worker.stats.parked >= 1, timeout=30, message="parked")
        (entry,) = client.get("/v1/ops/parked", headers=OPERATOR).json["parked"]
        replay = f"/v1/ops/parked/{DLQ}/{entry['dlq_partition']}/{entry['dlq_offset']}/replay"
        for parked in (2, 3):
            client.post(replay, headers=OPERATOR, status=202)
            wait_until(lambda n=parked: worker.stats.parked >= n, timeout=30, message="parked again")
            (listed,) = client.get("/v1/ops/parked", headers=OPERATOR).json["parked"]
            # The newest failure's error, on the entry first listed.
            latest = f"RuntimeError: bug number {len(attempts)}"
            assert (listed["dlq_offset"], listed["error"]) == (entry["dlq_offset"], latest)
            assert (listed["replayed"], len(listed["replayed_at"])) == (False, parked - 1)
    finally:
        _stop(worker, thread)
        app.registry.dbengine.dispose()
