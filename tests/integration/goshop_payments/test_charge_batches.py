"""The payments consumer's handler on the real database: a batch of order
events charges each run of order.created in one statement, and leaves the
payments and their events exactly as applying the batch one by one would."""

from __future__ import annotations

import sqlalchemy as sa

from goshop_common.clock import utcnow
from goshop_common.db import prepared
from goshop_payments.payments import PaymentDecider
from tests.integration.goshop_payments.test_refunds import CountingProvider, cancelled, created, order_fields


def story() -> tuple[list, list]:
    """Orders, and their events: charged, refused (a multiple of 5), charged
    twice (another event id for the same order), charged then cancelled
    (refunded), cancelled before it was charged (voided) then created late."""
    charged, refused, twice, refunded, late = (order_fields(amount) for amount in (1001, 1005, 1002, 1003, 1004))
    batch = [
        created(charged),
        created(refused),
        created(twice),
        created(twice),
        created(refunded),
        cancelled(refunded),
        cancelled(late),
        created(late),
    ]
    return [charged, refused, twice, refunded, late], batch


def outcome(db, orders) -> list[tuple]:
    """Each order's payment (status, reason, refunded) and its events' types and payloads, ids aside."""
    found = []
    for order in orders:
        payments = db.execute(
            sa.text("SELECT status, reason, refunded_at IS NOT NULL FROM payments.payments WHERE order_id = :o"),
            {"o": order["order_id"]},
        ).all()
        queued = db.execute(
            sa.text("SELECT event_type, payload FROM payments.outbox WHERE key = :k ORDER BY id"),
            {"k": str(order["order_id"])},
        ).all()
        events = [
            (event_type, {k: v for k, v in payload.items() if k not in ("event_id", "payment_id", "occurred_at")})
            for event_type, payload in queued
        ]
        found.append(([tuple(p) for p in payments], events))
    return found


def test_a_batch_charges_as_its_events_one_by_one_would(db_connection):
    together, one_by_one = PaymentDecider(CountingProvider(), utcnow), PaymentDecider(CountingProvider(), utcnow)
    orders_together, batch = story()
    together(db_connection, batch)
    orders_one_by_one, batch = story()
    for event in batch:
        one_by_one(db_connection, [event])

    got, expected = outcome(db_connection, orders_together), outcome(db_connection, orders_one_by_one)
    # The same but for each order's own ids and amounts: compare the shapes.
    shape = [([p for p in payments], [t for t, _payload in events]) for payments, events in got]
    assert shape == [([p for p in payments], [t for t, _payload in events]) for payments, events in expected]
    assert shape == [
        ([("confirmed", None, False)], ["payment.confirmed"]),
        ([("failed", "insufficient_funds", False)], ["payment.failed"]),
        ([("confirmed", None, False)], ["payment.confirmed"]),
        ([("refunded", "payment_timeout", True)], ["payment.confirmed", "payment.refunded"]),
        ([("voided", "payment_timeout", False)], []),
    ]
    for (_payments, events), order in zip(got, orders_together, strict=True):
        for _type, payload in events:
            assert payload["order_id"] == str(order["order_id"])
            assert payload["amount_cents"] == order["amount_cents"]
    assert together.provider.refunds == one_by_one.provider.refunds == [(1003, "RUB")]


def test_a_run_of_order_created_is_charged_in_one_statement(db_connection):
    statements: list[str] = []

    def seen(_conn, _cursor, sql, *_):
        if (ran := prepared.statement_of(sql)) is not None:
            statements.append(ran)

    batch = [created(order_fields(2000 + n)) for n in range(1, 5)]
    sa.event.listen(db_connection, "before_cursor_execute", seen)
    try:
        PaymentDecider(CountingProvider(), utcnow)(db_connection, batch)
    finally:
        sa.event.remove(db_connection, "before_cursor_execute", seen)
    assert len(statements) == 1
    queued = db_connection.execute(
        sa.text("SELECT count(*) FROM payments.outbox WHERE key = ANY(:keys)"),
        {"keys": [str(event.fields["order_id"]) for event in batch]},
    ).scalar()
    assert queued == 4
