"""The payment-timeout sweep on the real database: which orders it cancels,
what it queues, and that sweepers side by side never cancel one twice."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
import sqlalchemy as sa

from goshop_common.clock import utcnow
from goshop_orders.orders import Orders
from goshop_orders.sweeper import _CANCEL_OVERDUE, PAYMENT_TIMEOUT, PaymentTimeouts

TIMEOUT = 60.0


def place(engine, placed_at: dt.datetime, count: int = 1) -> list[uuid.UUID]:
    """Orders placed at ``placed_at`` with their order.created events, committed."""
    with engine.begin() as db:
        orders = Orders(db, lambda: placed_at)
        return [orders.create(uuid.uuid4(), 1000 + n, "RUB").id for n in range(count)]


def statuses(engine, order_ids) -> dict[uuid.UUID, tuple]:
    with engine.connect() as db:
        rows = db.execute(
            sa.text("SELECT id, status, reason FROM orders.orders WHERE id = ANY(:ids)"), {"ids": order_ids}
        )
        return {row.id: (row.status, row.reason) for row in rows}


def cancellations(engine) -> list[dict]:
    with engine.connect() as db:
        return list(
            db.execute(sa.text("SELECT payload FROM orders.outbox WHERE event_type = 'order.cancelled' ORDER BY id"))
            .scalars()
            .all()
        )


def sweeper(engine, now: dt.datetime, batch_size: int = 100) -> PaymentTimeouts:
    return PaymentTimeouts(engine, TIMEOUT, lambda: now, batch_size=batch_size)


def test_the_sweep_cancels_only_new_orders_older_than_the_timeout(clean_db):
    now = utcnow()
    [overdue] = place(clean_db, now - dt.timedelta(seconds=TIMEOUT + 1))
    [young] = place(clean_db, now - dt.timedelta(seconds=TIMEOUT - 1))
    [paid] = place(clean_db, now - dt.timedelta(seconds=TIMEOUT * 10))
    with clean_db.begin() as db:
        assert Orders(db, utcnow).settle([(paid, "paid", None)]) == {paid}

    assert sweeper(clean_db, now).sweep() == 1

    assert statuses(clean_db, [overdue, young, paid]) == {
        overdue: ("cancelled", PAYMENT_TIMEOUT),
        young: ("new", None),
        paid: ("paid", None),
    }
    [event] = cancellations(clean_db)
    assert event["event"] == "order.cancelled"
    assert (event["order_id"], event["status"], event["reason"]) == (str(overdue), "cancelled", PAYMENT_TIMEOUT)
    assert (event["amount_cents"], event["currency"]) == (1000, "RUB")


def test_a_second_sweep_cancels_nothing_and_queues_no_second_event(clean_db):
    now = utcnow()
    place(clean_db, now - dt.timedelta(seconds=TIMEOUT + 1), count=3)
    assert sweeper(clean_db, now).sweep() == 3
    assert sweeper(clean_db, now + dt.timedelta(hours=1)).sweep() == 0
    assert len(cancellations(clean_db)) == 3


def test_more_overdue_orders_than_a_batch_are_swept_in_several_transactions(clean_db):
    now = utcnow()
    order_ids = place(clean_db, now - dt.timedelta(seconds=TIMEOUT + 1), count=25)
    sweep = sweeper(clean_db, now, batch_size=10)
    assert [sweep.sweep_batch() for _ in range(4)] == [10, 10, 5, 0]
    assert set(statuses(clean_db, order_ids).values()) == {("cancelled", PAYMENT_TIMEOUT)}


def test_two_sweepers_at_once_cancel_each_overdue_order_exactly_once(clean_db):
    now = utcnow()
    order_ids = place(clean_db, now - dt.timedelta(seconds=TIMEOUT + 1), count=300)
    counts, errors = [], []
    start = threading.Barrier(2)

    def run():
        try:
            start.wait()
            counts.append(sweeper(clean_db, now, batch_size=7).sweep())
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sum(counts) == 300
    events = cancellations(clean_db)
    assert sorted(e["order_id"] for e in events) == sorted(str(i) for i in order_ids)


def test_an_order_being_settled_is_skipped_not_waited_for_nor_cancelled(clean_db):
    now = utcnow()
    [order_id] = place(clean_db, now - dt.timedelta(seconds=TIMEOUT + 1))
    with clean_db.connect() as settling:
        transaction = settling.begin()
        # The orders consumer settling this order holds its row lock.
        assert Orders(settling, utcnow).settle([(order_id, "paid", None)]) == {order_id}
        # SKIP LOCKED: the sweep neither takes the row nor waits for it (a
        # wait would end in the engine's statement timeout, an error).
        assert sweeper(clean_db, now).sweep() == 0
        transaction.commit()
    assert sweeper(clean_db, now).sweep() == 0
    assert statuses(clean_db, [order_id]) == {order_id: ("paid", None)}
    assert cancellations(clean_db) == []


@pytest.mark.parametrize("status", ["paid", "cancelled"])
def test_a_settled_order_is_never_swept_however_old(clean_db, status):
    now = utcnow()
    [order_id] = place(clean_db, now - dt.timedelta(days=30))
    with clean_db.begin() as db:
        reason = "insufficient_funds" if status == "cancelled" else None
        assert Orders(db, utcnow).settle([(order_id, status, reason)]) == {order_id}
    assert sweeper(clean_db, now).sweep() == 0
    assert cancellations(clean_db) == []


def test_the_sweep_finds_overdue_orders_through_the_partial_index_of_new_orders(clean_db):
    now = utcnow()
    place(clean_db, now - dt.timedelta(seconds=TIMEOUT + 1), count=3)
    statement = _CANCEL_OVERDUE.compile(dialect=clean_db.dialect)
    values = {"cutoff": now, "batch_size": 10, "now": now}
    with clean_db.begin() as db:
        # Tiny tables are cheapest to read whole: ask whether an index can serve at all.
        db.execute(sa.text("SET LOCAL enable_seqscan = off"))
        # EXPLAIN without ANALYZE plans the update and runs nothing.
        plan = "\n".join(db.exec_driver_sql(f"EXPLAIN {statement}", {**statement.params, **values}).scalars())
    assert "ix_orders_new_by_age" in plan, plan
