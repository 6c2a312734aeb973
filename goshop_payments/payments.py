"""Deciding payments for new orders: the payments side of the saga."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session as DbSession

from goshop_common.messaging.consumer import Event
from goshop_common.messaging.events import ORDER_CREATED, PAYMENT_CONFIRMED, PAYMENT_FAILED
from goshop_common.messaging.outbox import add_event
from goshop_payments.models import CONFIRMED, FAILED, OUTBOX, Payment
from goshop_payments.provider import MockProvider

# One charge per order: a second order.created for the same order inserts
# nothing. Core, on the table, with its values given at execute time: the ORM
# buys nothing for a row that is written once and never loaded here.
_INSERT_PAYMENT = (
    insert(Payment.__table__)
    .on_conflict_do_nothing(index_elements=[Payment.__table__.c.order_id])
    .returning(Payment.__table__.c.id)
)


class PaymentDecider:
    """Handler for ``order.created``: charge once, record, announce."""

    def __init__(self, provider: MockProvider, clock: Callable[[], dt.datetime]):
        self.provider = provider
        self.clock = clock

    def __call__(self, db: sa.Connection, event: Event) -> None:
        if event.type != ORDER_CREATED.name:
            return
        # Checked by the consumer against the contract: ids are UUIDs, the
        # amount a positive integer, the currency three capitals.
        order_id, user_id = event.fields["order_id"], event.fields["user_id"]
        amount, currency = event.fields["amount_cents"], event.fields["currency"]
        decision = self.provider.charge(amount, currency)
        now = self.clock()
        payment_id = uuid.uuid4()
        status = CONFIRMED if decision.confirmed else FAILED
        values = {
            "id": payment_id,
            "order_id": order_id,
            "user_id": user_id,
            "amount_cents": amount,
            "currency": currency,
            "status": status,
            "reason": decision.reason,
            "created_at": now,
        }
        inserted = db.execute(_INSERT_PAYMENT, values).first()
        if inserted is None:
            # The order already has its payment (an order.created with another
            # event id for the same order): one charge per order, no second event.
            return
        add_event(
            db,
            OUTBOX,
            PAYMENT_CONFIRMED if decision.confirmed else PAYMENT_FAILED,
            occurred_at=now,
            request_id=event.request_id,
            payment_id=payment_id,
            order_id=order_id,
            user_id=user_id,
            amount_cents=amount,
            currency=currency,
            status=status,
            reason=decision.reason,
        )


def payments_for(db: DbSession, order_id: uuid.UUID, user_id: uuid.UUID) -> list[Payment]:
    """The order's payments, if the order is ``user_id``'s: a stranger sees none."""
    return list(db.scalars(sa.select(Payment).where(Payment.order_id == order_id, Payment.user_id == user_id)))
