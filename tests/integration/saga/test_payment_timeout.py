"""The payment timeout and its compensation on the real broker and database:
payments is away, the order times out, payments comes back, charges late and
refunds — once — while the order stays cancelled."""

from __future__ import annotations

import dataclasses
import json

import pytest
import sqlalchemy as sa

from goshop_common.messaging.kafka import make_producer
from goshop_domain.events import ORDERS_TOPIC, event_headers
from tests.integration.goshop_ops.conftest import OPERATOR, make_ops_app
from tests.saga_runtime import SagaRuntime, saga_settings, wait_until

TIMEOUT_SECONDS = 1.5


@pytest.fixture
def timeout_saga(service_settings, kafka_broker):
    """Outboxer, orders consumer and its sweep; no payments consumer yet."""
    settings = dataclasses.replace(
        saga_settings(service_settings, kafka_broker.bootstrap),
        order_payment_timeout=TIMEOUT_SECONDS,
        order_sweep_interval=0.2,
    )
    runtime = SagaRuntime(settings)
    runtime.add_outboxer()
    runtime.add_orders_consumer()
    runtime.add_sweeper()
    yield runtime
    runtime.stop()


@pytest.fixture
def ops_client(service_settings, web_client):
    app = make_ops_app(service_settings, ollama_url="")
    yield web_client(app)
    app.registry.dbengine.dispose()


def create_order(client, customer, amount):
    return client.post_json("/v1/orders", {"amount_cents": amount}, headers=customer["headers"], status=201).json


def rows(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).all()


def order_state(engine, order_id):
    return tuple(rows(engine, "SELECT status, reason FROM orders.orders WHERE id = :o", o=order_id)[0])


def payment_events(engine, order_id):
    return [
        row.event_type
        for row in rows(
            engine,
            "SELECT event_type FROM payments.outbox WHERE key = :k AND published_at IS NOT NULL ORDER BY id",
            k=order_id,
        )
    ]


def consumed_by_orders(engine, event_type, order_id):
    return rows(
        engine,
        "SELECT 1 FROM orders.inbox i JOIN payments.outbox o ON o.event_id = i.event_id "
        "WHERE o.key = :k AND o.event_type = :t",
        k=order_id,
        t=event_type,
    )


def test_a_timed_out_order_whose_payment_comes_late_is_refunded_once_and_stays_cancelled(
    timeout_saga, orders_client, ops_client, customer, engine
):
    to_confirm = create_order(orders_client, customer, 19901)
    to_fail = create_order(orders_client, customer, 19900)
    ids = [to_confirm["id"], to_fail["id"]]

    # Payments is away: nobody answers, and the sweep gives up on both.
    assert timeout_saga.wait_settled(ids, timeout=30) == dict.fromkeys(ids, "cancelled")
    assert {order_state(engine, i) for i in ids} == {("cancelled", "payment_timeout")}
    assert not rows(engine, "SELECT 1 FROM payments.payments")
    status = orders_client.get(f"/v1/orders/{to_confirm['id']}/status", headers=customer["headers"]).json
    assert status == {"id": to_confirm["id"], "status": "cancelled", "reason": "payment_timeout"}

    # Payments is back: it reads order.created (charges) then order.cancelled (compensates).
    timeout_saga.add_payments_consumer()
    wait_until(
        lambda: payment_events(engine, to_confirm["id"]) == ["payment.confirmed", "payment.refunded"],
        timeout=60,
        message="late payment refunded",
    )
    wait_until(lambda: payment_events(engine, to_fail["id"]) == ["payment.failed"], message="failed payment")
    wait_until(lambda: consumed_by_orders(engine, "payment.refunded", to_confirm["id"]), message="refund consumed")

    [confirmed] = rows(engine, "SELECT status, reason FROM payments.payments WHERE order_id = :o", o=to_confirm["id"])
    [failed] = rows(engine, "SELECT status, reason FROM payments.payments WHERE order_id = :o", o=to_fail["id"])
    assert tuple(confirmed) == ("refunded", "payment_timeout")
    assert tuple(failed) == ("failed", "insufficient_funds")
    # The late payment.confirmed moved nothing.
    assert consumed_by_orders(engine, "payment.confirmed", to_confirm["id"])
    assert {order_state(engine, i) for i in ids} == {("cancelled", "payment_timeout")}

    # The cancellation delivered again — the same event, and the same news
    # under another id — refunds nothing more.
    [cancellation] = rows(
        engine,
        "SELECT payload FROM orders.outbox WHERE key = :k AND event_type = 'order.cancelled'",
        k=to_confirm["id"],
    )
    again = dict(cancellation.payload, event_id="00000000-0000-4000-8000-000000000001")
    producer = make_producer(timeout_saga.settings.kafka_bootstrap)
    try:
        for body in (cancellation.payload, again):
            producer.send(
                ORDERS_TOPIC,
                key=to_confirm["id"].encode(),
                value=json.dumps(body).encode(),
                headers=event_headers("order.cancelled", body["event_id"]),
            )
        producer.flush(10)
    finally:
        producer.close(timeout=5)
    wait_until(
        lambda: rows(engine, "SELECT 1 FROM payments.inbox WHERE event_id = :e", e=again["event_id"]),
        message="second cancellation consumed",
    )
    assert payment_events(engine, to_confirm["id"]) == ["payment.confirmed", "payment.refunded"]
    assert timeout_saga.payments[0].stats.duplicates >= 1

    # The ops assistant tells the story.
    body = ops_client.get(f"/v1/ops/orders/{to_confirm['id']}/timeline", headers=OPERATOR).json
    kinds = [(e["source"], e["event"], e["detail"].get("event_type")) for e in body["entries"]]
    assert ("orders", "status changed", None) in kinds
    assert ("outboxer", "event published", "order.cancelled") in kinds
    assert ("payments", "payment refunded", None) in kinds
    assert kinds.index(("payments", "payment decided", None)) < kinds.index(("payments", "payment refunded", None))
    changed = next(e for e in body["entries"] if e["event"] == "status changed")
    assert changed["detail"] == {"from": "new", "to": "cancelled", "reason": "payment_timeout"}
    answer = ops_client.post_json(f"/v1/ops/orders/{to_confirm['id']}/explain", {}, headers=OPERATOR).json["answer"]
    assert "payment_timeout" in answer
    assert "refunded at" in answer


def test_an_order_paid_within_the_timeout_is_never_cancelled(timeout_saga, orders_client, customer, engine):
    payments = timeout_saga.add_payments_consumer()
    # Its group join takes longer than the timeout on Tansu: wait for it.
    wait_until(lambda: payments.consumer.assignment(), message="payments consumer assigned")
    order = create_order(orders_client, customer, 19901)
    assert timeout_saga.wait_settled([order["id"]], timeout=30) == {order["id"]: "paid"}
    # Several sweeps later, past the timeout:
    wait_until(
        lambda: rows(
            engine,
            "SELECT 1 FROM orders.orders WHERE id = :o AND created_at < now() - make_interval(secs => :t)",
            o=order["id"],
            t=TIMEOUT_SECONDS * 2,
        ),
        message="timeout passed",
    )
    assert order_state(engine, order["id"]) == ("paid", None)
    assert not rows(engine, "SELECT 1 FROM orders.outbox WHERE event_type = 'order.cancelled'")
