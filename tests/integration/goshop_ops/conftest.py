"""The ops app over WebTest, on the real database the saga writes to: through
the seam (on the test's connection), or committing for the saga's workers."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.support import bearer, with_settings

OPS_TOKEN = "test-operator-token-0123456789abcdef"
OPERATOR = bearer(OPS_TOKEN)


def make_ops_app(service_settings, **changes):
    from goshop_ops import make_app

    return make_app(with_settings(service_settings, ops_token=OPS_TOKEN, **changes))


@pytest.fixture(scope="session")
def ops_app(service_settings, kafka_broker):
    """The ops app answering by rules (no OLLAMA_URL), on the tests' broker."""
    app = make_ops_app(service_settings, ollama_url="", kafka_bootstrap=kafka_broker.bootstrap)
    yield app
    app.registry.dbengine.dispose()


@pytest.fixture
def ops_client(ops_app, web_client):
    """WebTest against the ops app (see ``web_client``): through the seam it
    reads what the test's other seamed clients wrote on the test's connection."""
    return web_client(ops_app)


def create_order(orders_client, customer, amount_cents: int) -> dict:
    return orders_client.post_json(
        "/v1/orders", {"amount_cents": amount_cents}, headers=customer["headers"], status=201
    ).json


def fail_publication(connection, order_id: str, error: str, attempts: int = 3) -> None:
    """What the outboxer leaves on a row it could not produce: its attempts,
    the error, and when it tries again (on the test's connection)."""
    connection.execute(
        sa.text(
            "UPDATE orders.outbox SET attempts = :attempts, last_error = :error, "
            "next_attempt_at = now() + interval '30 seconds' WHERE key = :key"
        ),
        {"attempts": attempts, "error": error, "key": order_id},
    )


def park_record(bootstrap: str, consumer: str, value: bytes, headers=None, key: bytes = b"k") -> None:
    """Produce ``value`` to orders.events (partition 0), read it back, and
    park it as ``consumer`` would a handler's bug ("RuntimeError: boom")."""
    from kafka import TopicPartition

    from goshop_common.messaging import deadletters
    from goshop_common.messaging.deadletters import DeadLetters
    from goshop_common.messaging.kafka import make_producer, make_reader
    from goshop_domain.events import ORDERS_TOPIC
    from tests.saga_runtime import wait_until

    producer = make_producer(bootstrap)
    try:
        sent = producer.send(ORDERS_TOPIC, key=key, value=value, headers=headers or [], partition=0).get(10)
        reader = make_reader(bootstrap)
        try:
            tp = TopicPartition(ORDERS_TOPIC, 0)
            reader.assign([tp])
            reader.seek(tp, sent.offset)
            records = wait_until(lambda: reader.poll(500).get(tp), timeout=10, message="record read back")
        finally:
            reader.close()
        DeadLetters(consumer, producer).park([(records[0], deadletters.HANDLER_ERROR, "RuntimeError: boom")])
    finally:
        producer.close(timeout=5)
