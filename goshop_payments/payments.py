"""Deciding payments for new orders: the payments side of the saga."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session as DbSession

from goshop_common.messaging.consumer import Event, PoisonEvent
from goshop_common.messaging.kafka import PAYMENTS_TOPIC
from goshop_common.messaging.outbox import add_event
from goshop_payments.models import CONFIRMED, FAILED, OUTBOX, Payment
from goshop_payments.provider import MockProvider

ORDER_CREATED = "order.created"
PAYMENT_CONFIRMED = "payment.confirmed"
PAYMENT_FAILED = "payment.failed"


def _order_fields(body: dict) -> tuple[uuid.UUID, uuid.UUID, int, str]:
    try:
        order_id = uuid.UUID(str(body["order_id"]))
        user_id = uuid.UUID(str(body["user_id"]))
        amount = body["amount_cents"]
        currency = body["currency"]
    except (KeyError, ValueError):
        raise PoisonEvent("order.created without a valid order_id, user_id, amount_cents or currency") from None
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise PoisonEvent("amount_cents is not a positive integer")
    if not isinstance(currency, str) or len(currency) != 3:
        raise PoisonEvent("currency is not a 3-letter code")
    return order_id, user_id, amount, currency


class PaymentDecider:
    """Handler for ``order.created``: charge once, record, announce."""

    def __init__(self, provider: MockProvider, clock: Callable[[], dt.datetime]):
        self.provider = provider
        self.clock = clock

    def __call__(self, db: DbSession, event: Event) -> None:
        if event.type != ORDER_CREATED:
            return
        order_id, user_id, amount, currency = _order_fields(event.body)
        decision = self.provider.charge(amount, currency)
        now = self.clock()
        payment_id = uuid.uuid4()
        inserted = db.execute(
            insert(Payment)
            .values(
                id=payment_id,
                order_id=order_id,
                user_id=user_id,
                amount_cents=amount,
                currency=currency,
                status=CONFIRMED if decision.confirmed else FAILED,
                reason=decision.reason,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=[Payment.order_id])
            .returning(Payment.id)
        ).first()
        if inserted is None:
            # The order already has its payment (an order.created with another
            # event id for the same order): one charge per order, no second event.
            return
        add_event(
            db,
            OUTBOX,
            topic=PAYMENTS_TOPIC,
            key=str(order_id),
            event_type=PAYMENT_CONFIRMED if decision.confirmed else PAYMENT_FAILED,
            fields={
                "payment_id": str(payment_id),
                "order_id": str(order_id),
                "user_id": str(user_id),
                "amount_cents": amount,
                "currency": currency,
                "status": CONFIRMED if decision.confirmed else FAILED,
                "reason": decision.reason,
            },
            occurred_at=now,
            request_id=event.request_id,
        )


def payments_for(db: DbSession, order_id: uuid.UUID, user_id: uuid.UUID) -> list[Payment]:
    return list(db.scalars(sa.select(Payment).where(Payment.order_id == order_id, Payment.user_id == user_id)))
