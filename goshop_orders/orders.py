"""Creating and reading orders, and applying the payment saga's outcome."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session as DbSession

from goshop_common.kafka import ORDERS_TOPIC
from goshop_common.outbox import add_event
from goshop_orders.models import NEW, OUTBOX, Order

ORDER_CREATED = "order.created"


class InvalidCursor(ValueError):
    pass


def encode_cursor(order: Order) -> str:
    raw = f"{order.created_at.isoformat()}|{order.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, _, order_id = raw.partition("|")
        moment = dt.datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment, uuid.UUID(order_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(cursor) from None


class Orders:
    def __init__(self, db: DbSession, clock: Callable[[], dt.datetime]):
        self.db = db
        self.clock = clock

    def create(self, user_id: uuid.UUID, amount_cents: int, currency: str, request_id: str | None = None) -> Order:
        """The order and its ``order.created`` event, in the caller's transaction."""
        now = self.clock()
        order = Order(
            id=uuid.uuid4(),
            user_id=user_id,
            amount_cents=amount_cents,
            currency=currency,
            status=NEW,
            created_at=now,
            updated_at=now,
        )
        self.db.add(order)
        add_event(
            self.db,
            OUTBOX,
            topic=ORDERS_TOPIC,
            key=str(order.id),
            event_type=ORDER_CREATED,
            fields={
                "order_id": str(order.id),
                "user_id": str(user_id),
                "amount_cents": amount_cents,
                "currency": currency,
                "status": NEW,
            },
            occurred_at=now,
            request_id=request_id,
        )
        return order

    def get_for_user(self, order_id: str, user_id: uuid.UUID) -> Order | None:
        """The order if it exists and belongs to the user; None otherwise, so a
        stranger cannot tell someone else's order from a missing one."""
        try:
            key = uuid.UUID(order_id)
        except ValueError:
            return None
        order = self.db.get(Order, key)
        if order is None or order.user_id != user_id:
            return None
        return order

    def list_for_user(self, user_id: uuid.UUID, limit: int, cursor: str | None) -> tuple[list[Order], str | None]:
        """A page of the user's orders, newest first, and the cursor of the next page."""
        query = sa.select(Order).where(Order.user_id == user_id)
        if cursor:
            created_at, order_id = decode_cursor(cursor)
            query = query.where(sa.tuple_(Order.created_at, Order.id) < sa.tuple_(created_at, order_id))
        query = query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
        orders = list(self.db.scalars(query))
        if len(orders) > limit:
            return orders[:limit], encode_cursor(orders[limit - 1])
        return orders, None

    def settle(self, order_id: uuid.UUID, status: str, reason: str | None) -> bool:
        """Move a ``new`` order to ``status``; False when the order is unknown or
        already settled (transitions happen only from ``new``)."""
        result = self.db.execute(
            sa.update(Order)
            .where(Order.id == order_id, Order.status == NEW)
            .values(status=status, reason=reason, updated_at=self.clock())
        )
        return result.rowcount == 1
