"""Deciding payments for new orders, and giving them back for cancelled ones:
the payments side of the saga.

``order.created`` is charged once (one payment per order). ``order.cancelled``
— orders gave up waiting for the payment — is compensated: a confirmed
payment is refunded, once, with a ``payment.refunded`` event; an order not
charged yet gets a ``voided`` payment, so that its ``order.created``, should
it still come, charges nothing. A failed payment took no money: nothing to do.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session as DbSession

from goshop_common.db.arrays import array_rows, array_values
from goshop_common.messaging.consumer import Event
from goshop_common.messaging.outbox import Announcement, add_event, add_events_with
from goshop_domain.events import (
    ORDER_CANCELLED,
    ORDER_CREATED,
    PAYMENT_CONFIRMED,
    PAYMENT_FAILED,
    PAYMENT_REFUNDED,
)
from goshop_payments.models import CONFIRMED, FAILED, OUTBOX, REFUNDED, VOIDED, Payment
from goshop_payments.provider import MockProvider

# One payment per order: a second order.created for the same order inserts
# nothing. Core, on the table, a run of payments at once, its values bound as
# one array a column: the ORM buys nothing for rows written once and never
# loaded here.
_PAYMENTS = Payment.__table__
_PAYMENT_COLUMNS = ("id", "order_id", "user_id", "amount_cents", "currency", "status", "reason", "created_at")
_CHARGING = array_rows("charging", {column: _PAYMENTS.c[column].type for column in _PAYMENT_COLUMNS}, "all_")
_INSERT_PAYMENTS = (
    insert(_PAYMENTS)
    .from_select(list(_PAYMENT_COLUMNS), sa.select(*_CHARGING.c))
    .on_conflict_do_nothing(index_elements=[_PAYMENTS.c.order_id])
    .returning(_PAYMENTS.c.id)
)
# Only a confirmed payment is refunded, and only once: the second
# order.cancelled (or a replay) finds it refunded already and changes nothing.
_REFUND = (
    sa.update(_PAYMENTS)
    .where(_PAYMENTS.c.order_id == sa.bindparam("of_order"), _PAYMENTS.c.status == CONFIRMED)
    .values(status=REFUNDED, reason=sa.bindparam("new_reason"), refunded_at=sa.bindparam("now"))
    .returning(_PAYMENTS.c.id, _PAYMENTS.c.user_id, _PAYMENTS.c.amount_cents, _PAYMENTS.c.currency)
)


class PaymentDecider:
    """Handler of orders.events: charge once for ``order.created``, record,
    announce; compensate ``order.cancelled`` (see the module docstring)."""

    def __init__(self, provider: MockProvider, clock: Callable[[], dt.datetime]):
        self.provider = provider
        self.clock = clock

    def __call__(self, db: sa.Connection, batch: list[Event]) -> None:
        """The batch in order: each run of order.created events charged in
        one statement, each order.cancelled compensated on its own."""
        run: list[Event] = []
        for event in batch:
            if event.type == ORDER_CREATED.name:
                run.append(event)
            elif event.type == ORDER_CANCELLED.name:
                self._charge(db, run)
                run = []
                self._compensate(db, event)
        self._charge(db, run)

    def _charge(self, db: sa.Connection, run: list[Event]) -> None:
        """Each order.created of ``run`` charged, recorded and announced, in
        one statement. The event is queued only with a payment: a second
        order.created for the same order (another event id, or later in the
        run) inserts nothing, so it charges once and announces once."""
        decided = {}
        for event in run:
            if event.fields["order_id"] not in decided:
                decided[event.fields["order_id"]] = self._decide(event)
        if not decided:
            return
        payments = [payment for payment, _announcement in decided.values()]
        values = array_values(payments, _PAYMENT_COLUMNS, "all_")
        add_events_with(db, _INSERT_PAYMENTS, values, OUTBOX, [announcement for _p, announcement in decided.values()])

    def _decide(self, event: Event) -> tuple[dict, Announcement]:
        """The provider's decision on an order.created: the payment row, and
        its event, due when the row is inserted."""
        # Checked by the consumer against the contract: ids are UUIDs, the
        # amount a positive integer, the currency three capitals.
        order_id, user_id = event.fields["order_id"], event.fields["user_id"]
        amount, currency = event.fields["amount_cents"], event.fields["currency"]
        decision = self.provider.charge(amount, currency)
        now = self.clock()
        payment_id = uuid.uuid4()
        status = CONFIRMED if decision.confirmed else FAILED
        payment = {
            "id": payment_id,
            "order_id": order_id,
            "user_id": user_id,
            "amount_cents": amount,
            "currency": currency,
            "status": status,
            "reason": decision.reason,
            "created_at": now,
        }
        # The event says what the row says, the payment's id by its own name.
        fields = {name: payment[name] for name in _PAYMENT_COLUMNS if name not in ("id", "created_at")}
        fields["payment_id"] = payment_id
        event_type = PAYMENT_CONFIRMED if decision.confirmed else PAYMENT_FAILED
        return payment, Announcement(payment_id, event_type, now, event.request_id, fields)

    def _compensate(self, db: sa.Connection, event: Event) -> None:
        """The order was cancelled without its payment: refund a confirmed
        one, void one not taken yet."""
        order_id, reason, now = event.fields["order_id"], event.fields["reason"], self.clock()
        refunded = db.execute(_REFUND, {"of_order": order_id, "new_reason": reason, "now": now}).first()
        if refunded is not None:
            self.provider.refund(refunded.amount_cents, refunded.currency)
            add_event(
                db,
                OUTBOX,
                PAYMENT_REFUNDED,
                occurred_at=now,
                request_id=event.request_id,
                payment_id=refunded.id,
                order_id=order_id,
                user_id=refunded.user_id,
                amount_cents=refunded.amount_cents,
                currency=refunded.currency,
                status=REFUNDED,
                reason=reason,
            )
            return
        # No confirmed payment. Either there is one that needs nothing (failed,
        # refunded or voided already), or the order was never charged: a voided
        # payment then takes its place, so a late order.created charges nothing.
        values = {
            "id": uuid.uuid4(),
            "order_id": order_id,
            "user_id": event.fields["user_id"],
            "amount_cents": event.fields["amount_cents"],
            "currency": event.fields["currency"],
            "status": VOIDED,
            "reason": reason,
            "created_at": now,
        }
        db.execute(_INSERT_PAYMENTS, array_values([values], _PAYMENT_COLUMNS, "all_"))


def payments_for(db: DbSession, order_id: uuid.UUID, user_id: uuid.UUID) -> list[Payment]:
    """The order's payments, if the order is ``user_id``'s: a stranger sees none."""
    return list(db.scalars(sa.select(Payment).where(Payment.order_id == order_id, Payment.user_id == user_id)))
