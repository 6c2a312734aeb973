"""The orders consumer's handler on the real database: a batch of payment
events settles its orders in one statement, exactly as applying the events
one by one, in order, would."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import sqlalchemy as sa

from goshop_common.clock import utcnow
from goshop_common.db import prepared
from goshop_common.messaging.consumer import Event
from goshop_domain.events import PAYMENT_CONFIRMED, PAYMENT_FAILED, PAYMENT_REFUNDED, PAYMENTS_TOPIC
from goshop_orders.consumer import PaymentOutcomes
from goshop_orders.orders import Orders


def place(engine, count: int) -> list[uuid.UUID]:
    with engine.begin() as db:
        orders = Orders(db, utcnow)
        return [orders.create(uuid.uuid4(), 1000, "RUB").id for _ in range(count)]


def payment_event(event_type, order_id: uuid.UUID, offset: int) -> Event:
    status = event_type.name.removeprefix("payment.")
    reason = None if event_type is PAYMENT_CONFIRMED else "insufficient_funds"
    body = event_type.build(
        dt.datetime.now(dt.UTC),
        payment_id=uuid.uuid4(),
        order_id=order_id,
        user_id=uuid.uuid4(),
        amount_cents=1000,
        currency="RUB",
        status=status,
        reason=reason,
    )
    fields = {"order_id": order_id, "reason": reason}
    return Event(uuid.UUID(body["event_id"]), event_type.name, body, PAYMENTS_TOPIC, 0, offset, {}, fields)


def states(engine, order_ids) -> list[tuple]:
    with engine.connect() as db:
        rows = db.execute(
            sa.text("SELECT id, status, reason FROM orders.orders WHERE id = ANY(:ids)"), {"ids": order_ids}
        )
        found = {row.id: (row.status, row.reason) for row in rows}
    return [found.get(order_id) for order_id in order_ids]


def story(order_ids) -> list[Event]:
    """Paid, refused, paid then refused (a second payment event for one
    order), refunded (not the orders consumer's), and an order nobody placed."""
    paid, refused, twice, refunded = order_ids
    nobodys = uuid.uuid4()
    kinds = [
        (PAYMENT_CONFIRMED, paid),
        (PAYMENT_FAILED, refused),
        (PAYMENT_CONFIRMED, twice),
        (PAYMENT_FAILED, twice),
        (PAYMENT_REFUNDED, refunded),
        (PAYMENT_CONFIRMED, nobodys),
    ]
    return [payment_event(kind, order_id, offset) for offset, (kind, order_id) in enumerate(kinds)]


def test_a_batch_settles_its_orders_as_its_events_one_by_one_would(clean_db, caplog):
    together, one_by_one = place(clean_db, 4), place(clean_db, 4)
    handler = PaymentOutcomes()
    with caplog.at_level(logging.WARNING, logger="goshop.orders.consumer"):
        with clean_db.begin() as db:
            handler(db, story(together))
        warned_together = [r.event for r in caplog.records]
        caplog.clear()
        for event in story(one_by_one):
            with clean_db.begin() as db:
                handler(db, [event])
        warned_one_by_one = [r.event for r in caplog.records]

    assert (
        states(clean_db, together)
        == states(clean_db, one_by_one)
        == [
            ("paid", None),
            ("cancelled", "insufficient_funds"),
            ("paid", None),
            ("new", None),
        ]
    )
    # The refused second payment of an order already paid, and the unknown
    # order, are each said once; the refund is not the orders consumer's.
    assert warned_together == warned_one_by_one == ["payment.failed", "payment.confirmed"]


def test_a_batch_settles_in_one_statement(clean_db):
    order_ids = place(clean_db, 4)
    statements: list[str] = []

    def seen(_conn, _cursor, sql, *_):
        if (ran := prepared.statement_of(sql)) is not None:
            statements.append(ran)

    sa.event.listen(clean_db, "before_cursor_execute", seen)
    try:
        with clean_db.begin() as db:
            PaymentOutcomes()(db, story(order_ids))
    finally:
        sa.event.remove(clean_db, "before_cursor_execute", seen)
    assert len([sql for sql in statements if sql.startswith("UPDATE orders.orders")]) == 1
