"""The checkout saga over a real broker and database: an order created over
HTTP is paid or cancelled through Kafka, exactly once in effect."""

import datetime as dt
import json
import uuid

import pytest
import sqlalchemy as sa

from goshop_common.messaging.kafka import PARTITIONS, make_producer
from goshop_domain.events import ORDERS_TOPIC, PAYMENT_FAILED, PAYMENTS_TOPIC, event_headers
from tests.saga_runtime import SagaRuntime, saga_settings, wait_until


@pytest.fixture(scope="module")
def saga(service_settings, kafka_broker):
    runtime = SagaRuntime(saga_settings(service_settings, kafka_broker.bootstrap)).start()
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def producer(kafka_broker):
    producer = make_producer(kafka_broker.bootstrap)
    yield producer
    producer.close(timeout=5)


def create_order(client, customer, amount):
    return client.post_json("/v1/orders", {"amount_cents": amount}, headers=customer["headers"], status=201).json


def rows(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).all()


def test_an_amount_not_divisible_by_five_ends_paid(saga, orders_client, customer, engine):
    order = create_order(orders_client, customer, 19901)
    assert saga.wait_settled([order["id"]]) == {order["id"]: "paid"}
    status = orders_client.get(f"/v1/orders/{order['id']}/status", headers=customer["headers"]).json
    assert status == {"id": order["id"], "status": "paid", "reason": None}
    [payment] = rows(
        engine, "SELECT status, reason, amount_cents FROM payments.payments WHERE order_id = :o", o=order["id"]
    )
    assert tuple(payment) == ("confirmed", None, 19901)


def test_an_amount_divisible_by_five_ends_cancelled_with_the_reason(saga, orders_client, customer, engine):
    order = create_order(orders_client, customer, 19900)
    assert saga.wait_settled([order["id"]]) == {order["id"]: "cancelled"}
    status = orders_client.get(f"/v1/orders/{order['id']}/status", headers=customer["headers"]).json
    assert status == {"id": order["id"], "status": "cancelled", "reason": "insufficient_funds"}
    [payment] = rows(engine, "SELECT status, reason FROM payments.payments WHERE order_id = :o", o=order["id"])
    assert tuple(payment) == ("failed", "insufficient_funds")


def test_every_event_is_published_once_and_recorded_in_the_inboxes(saga, orders_client, customer, engine):
    order = create_order(orders_client, customer, 1234)
    saga.wait_settled([order["id"]])
    wait_until(
        lambda: not rows(engine, "SELECT 1 FROM payments.outbox WHERE published_at IS NULL"),
        message="payments outbox drained",
    )
    [created] = rows(engine, "SELECT event_id, published_at FROM orders.outbox WHERE key = :o", o=order["id"])
    [decided] = rows(engine, "SELECT event_id, event_type FROM payments.outbox WHERE key = :o", o=order["id"])
    assert created.published_at is not None
    assert decided.event_type == "payment.confirmed"
    assert rows(engine, "SELECT 1 FROM payments.inbox WHERE event_id = :e", e=created.event_id)
    assert rows(engine, "SELECT 1 FROM orders.inbox WHERE event_id = :e", e=decided.event_id)


def _republish(producer, topic, payload, key):
    producer.send(
        topic,
        key=key.encode(),
        value=json.dumps(payload).encode(),
        headers=event_headers(payload["event"], payload["event_id"]),
    ).get(timeout=10)


def test_an_order_created_event_delivered_twice_charges_once(saga, producer, orders_client, customer, engine):
    order = create_order(orders_client, customer, 777)
    saga.wait_settled([order["id"]])
    [row] = rows(engine, "SELECT payload FROM orders.outbox WHERE key = :o", o=order["id"])
    duplicates_before = sum(c.stats.duplicates for c in saga.payments)
    _republish(producer, ORDERS_TOPIC, row.payload, order["id"])
    wait_until(lambda: sum(c.stats.duplicates for c in saga.payments) > duplicates_before, message="duplicate seen")
    assert len(rows(engine, "SELECT 1 FROM payments.payments WHERE order_id = :o", o=order["id"])) == 1
    assert len(rows(engine, "SELECT 1 FROM payments.outbox WHERE key = :o", o=order["id"])) == 1


def test_a_payment_event_delivered_twice_transitions_once(saga, producer, orders_client, customer, engine):
    order = create_order(orders_client, customer, 778)
    saga.wait_settled([order["id"]])
    [row] = rows(engine, "SELECT payload FROM payments.outbox WHERE key = :o", o=order["id"])
    updated_before = rows(engine, "SELECT updated_at FROM orders.orders WHERE id = :o", o=order["id"])[0][0]
    duplicates_before = sum(c.stats.duplicates for c in saga.orders)
    _republish(producer, PAYMENTS_TOPIC, row.payload, order["id"])
    wait_until(lambda: sum(c.stats.duplicates for c in saga.orders) > duplicates_before, message="duplicate seen")
    assert rows(engine, "SELECT status, updated_at FROM orders.orders WHERE id = :o", o=order["id"])[0] == (
        "paid",
        updated_before,
    )


def test_a_contradicting_payment_event_does_not_move_a_settled_order(saga, producer, orders_client, customer, engine):
    order = create_order(orders_client, customer, 779)
    saga.wait_settled([order["id"]])
    applied_before = sum(c.stats.applied for c in saga.orders)
    # A well-formed payment.failed (another payment id, another time): the
    # contract accepts it, the order's state machine does not.
    forged = PAYMENT_FAILED.build(
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        payment_id=uuid.uuid4(),
        order_id=uuid.UUID(order["id"]),
        user_id=uuid.UUID(customer["id"]),
        amount_cents=779,
        currency=order["currency"],
        status="failed",
        reason="insufficient_funds",
    )
    _republish(producer, PAYMENTS_TOPIC, forged, order["id"])
    wait_until(lambda: sum(c.stats.applied for c in saga.orders) > applied_before, message="event consumed")
    assert saga.statuses([order["id"]]) == {order["id"]: "paid"}


def test_an_outbox_row_published_twice_after_a_crash_is_applied_once(saga, orders_client, customer, engine):
    """A relay that produced a row but died before its commit leaves the row
    pending: exactly the state this UPDATE recreates. The next pass publishes
    it again at a new offset; the inbox catches it by event id."""
    order = create_order(orders_client, customer, 4321)
    saga.wait_settled([order["id"]])
    duplicates_before = sum(c.stats.duplicates for c in saga.payments)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE orders.outbox SET published_at = NULL WHERE key = :o"), {"o": order["id"]})
    wait_until(lambda: sum(c.stats.duplicates for c in saga.payments) > duplicates_before, message="republished copy")
    assert len(rows(engine, "SELECT 1 FROM payments.payments WHERE order_id = :o", o=order["id"])) == 1
    assert saga.statuses([order["id"]]) == {order["id"]: "paid"}


def test_poison_messages_are_parked_without_stalling_any_partition(saga, producer, orders_client, customer, engine):
    parked_before = sum(c.stats.parked for c in saga.payments + saga.orders)
    garbage = [b"not json", b"[1, 2]", b'{"event": "order.created"}', b'{"event_id": "x", "event": 1}', b"\xff\xfe"]
    for topic in (ORDERS_TOPIC, PAYMENTS_TOPIC):
        for partition in range(PARTITIONS):
            for value in garbage:
                producer.send(topic, key=b"poison", value=value, partition=partition)
    # Well-formed envelopes that cannot apply: an unknown order, a bad amount.
    unknown = str(uuid.uuid4())
    bad_amount = {
        "event_id": str(uuid.uuid4()),
        "event": "order.created",
        "version": 1,
        "occurred_at": "2026-01-01T00:00:00Z",
        "order_id": unknown,
        "user_id": customer["id"],
        "amount_cents": "lots",
        "currency": "RUB",
    }
    _republish(producer, ORDERS_TOPIC, bad_amount, unknown)
    stray = dict(bad_amount, event_id=str(uuid.uuid4()), event="payment.confirmed")
    _republish(producer, PAYMENTS_TOPIC, stray, unknown)
    producer.flush(10)
    orders = [create_order(orders_client, customer, 1000 + n) for n in range(6)]
    statuses = saga.wait_settled([o["id"] for o in orders])
    assert set(statuses.values()) <= {"paid", "cancelled"}
    assert sum(c.stats.parked for c in saga.payments + saga.orders) >= parked_before + 2 * PARTITIONS * len(garbage)
    assert not rows(engine, "SELECT 1 FROM payments.payments WHERE order_id = :o", o=unknown)


def test_a_burst_of_200_orders_all_reach_a_final_state(saga, orders_client, customer, engine):
    orders = [create_order(orders_client, customer, 5000 + n) for n in range(200)]
    statuses = saga.wait_settled([o["id"] for o in orders], timeout=120)
    expected = {o["id"]: ("cancelled" if o["amount_cents"] % 5 == 0 else "paid") for o in orders}
    assert statuses == expected
    [(payments, distinct)] = rows(
        engine,
        "SELECT count(*), count(DISTINCT order_id) FROM payments.payments WHERE order_id = ANY(:ids)",
        ids=[uuid.UUID(o["id"]) for o in orders],
    )
    assert payments == distinct == 200
