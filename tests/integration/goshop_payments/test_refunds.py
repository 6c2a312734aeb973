"""Compensation on the payments side, on the real database: order.cancelled
refunds a confirmed payment once, voids an order not charged yet, and leaves a
failed payment alone."""

from __future__ import annotations

import json
import types
import uuid

import pytest
import sqlalchemy as sa

from goshop_common.clock import utcnow
from goshop_common.messaging.consumer import parse
from goshop_domain.events import ORDER_CANCELLED, ORDER_CREATED, event_headers
from goshop_payments.payments import PaymentDecider
from goshop_payments.provider import MockProvider


class CountingProvider(MockProvider):
    """The mock provider, counting the refunds it was asked for."""

    def __init__(self):
        super().__init__(fail_divisor=5)
        self.refunds = []

    def refund(self, amount_cents, currency):
        self.refunds.append((amount_cents, currency))


@pytest.fixture
def decider():
    return PaymentDecider(CountingProvider(), utcnow)


def delivered(event_type, **fields):
    """An event as the consumer hands it to its handler: built by the
    contract, read back from a record."""
    body = event_type.build(utcnow(), **fields)
    record = types.SimpleNamespace(
        value=json.dumps(body).encode(),
        topic=event_type.topic,
        partition=0,
        offset=0,
        headers=event_headers(event_type.name, body["event_id"]),
    )
    return parse(record)


def order_fields(amount_cents: int) -> dict:
    return {"order_id": uuid.uuid4(), "user_id": uuid.uuid4(), "amount_cents": amount_cents, "currency": "RUB"}


def created(order):
    return delivered(ORDER_CREATED, **order, status="new")


def cancelled(order):
    return delivered(ORDER_CANCELLED, **order, status="cancelled", reason="payment_timeout")


def payment(db, order) -> tuple:
    return tuple(
        db.execute(
            sa.text("SELECT status, reason, refunded_at IS NOT NULL FROM payments.payments WHERE order_id = :o"),
            {"o": order["order_id"]},
        ).one()
    )


def events(db, order) -> list[str]:
    query = sa.text("SELECT event_type FROM payments.outbox WHERE key = :k ORDER BY id")
    return list(db.execute(query, {"k": str(order["order_id"])}).scalars())


def test_a_confirmed_payment_of_a_cancelled_order_is_refunded_once(db_connection, decider):
    order = order_fields(19901)
    decider(db_connection, [created(order)])
    decider(db_connection, [cancelled(order)])
    # The sweep's event again under another id (or an operator's replay): no second refund.
    decider(db_connection, [cancelled(order)])

    assert payment(db_connection, order) == ("refunded", "payment_timeout", True)
    assert events(db_connection, order) == ["payment.confirmed", "payment.refunded"]
    assert decider.provider.refunds == [(19901, "RUB")]
    [refund] = db_connection.execute(
        sa.text("SELECT payload FROM payments.outbox WHERE event_type = 'payment.refunded'")
    ).scalars()
    assert (refund["order_id"], refund["status"], refund["reason"]) == (
        str(order["order_id"]),
        "refunded",
        "payment_timeout",
    )
    assert (refund["amount_cents"], refund["currency"], refund["user_id"]) == (19901, "RUB", str(order["user_id"]))


def test_a_failed_payment_of_a_cancelled_order_is_left_as_it_is(db_connection, decider):
    order = order_fields(19900)
    decider(db_connection, [created(order)])
    decider(db_connection, [cancelled(order)])
    assert payment(db_connection, order) == ("failed", "insufficient_funds", False)
    assert events(db_connection, order) == ["payment.failed"]
    assert decider.provider.refunds == []


def test_an_order_cancelled_before_its_charge_is_voided_and_never_charged(db_connection, decider):
    order = order_fields(19901)
    decider(db_connection, [cancelled(order)])
    # Its order.created arrives after all (replayed by an operator, say).
    decider(db_connection, [created(order)])
    assert payment(db_connection, order) == ("voided", "payment_timeout", False)
    assert events(db_connection, order) == []
    assert decider.provider.refunds == []


def test_the_payments_api_shows_a_refunded_payment_to_its_owner(
    db_connection, decider, payments_app, seam_client, customer
):
    order = {**order_fields(19901), "user_id": uuid.UUID(customer["id"])}
    decider(db_connection, [created(order)])
    decider(db_connection, [cancelled(order)])
    body = (
        seam_client(payments_app)
        .get("/v1/payments", params={"order_id": str(order["order_id"])}, headers=customer["headers"])
        .json
    )
    [shown] = body["payments"]
    assert (shown["status"], shown["reason"]) == ("refunded", "payment_timeout")
    assert shown["refunded_at"] >= shown["created_at"]
