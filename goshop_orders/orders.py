"""Creating and reading orders, and applying the payment saga's outcome."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session as DbSession

from goshop_common.db import prepared
from goshop_common.db.arrays import array_rows, array_values
from goshop_common.messaging.outbox import add_event_with
from goshop_domain.events import ORDER_CREATED
from goshop_orders.models import NEW, OUTBOX, Order


class InvalidCursor(ValueError):
    """A cursor that ``encode_cursor`` cannot have made (a 400, not a 500)."""


# A cursor is opaque to clients: the last order's creation time (UTC
# microseconds since the epoch, in hex) and id (hex). Every string of this
# shape is a position a page can start from, so the document's pattern is the
# whole rule, and nothing the client sends reaches PostgreSQL as a time it
# cannot hold (14 hex digits end before the year 4300).
_MICROS_DIGITS = 14
CURSOR_REGEX = f"[0-9a-f]{{1,{_MICROS_DIGITS}}}[.][0-9a-f]{{32}}"
CURSOR_MAX_LENGTH = _MICROS_DIGITS + 1 + 32
_CURSOR = re.compile(CURSOR_REGEX)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def encode_cursor(order: Order) -> str:
    """The position just after ``order`` in "newest first" order."""
    micros = (order.created_at - _EPOCH) // dt.timedelta(microseconds=1)
    return f"{micros:x}.{order.id.hex}"


def page_query(user_id: uuid.UUID, limit: int, cursor: str | None) -> sa.Select[Order]:
    """Up to ``limit`` of the user's orders, newest first, from ``cursor`` on:
    a walk of ix_orders_user_newest that starts at the cursor, so a page deep
    in a long history reads as few rows as the first."""
    query = sa.select(Order).where(Order.user_id == user_id)
    if cursor:
        created_at, order_id = decode_cursor(cursor)
        query = query.where(sa.tuple_(Order.created_at, Order.id) < sa.tuple_(created_at, order_id))
    return query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    """The (created_at, id) a cursor stands for; InvalidCursor for anything
    encode_cursor cannot have made."""
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
        raise InvalidCursor(cursor)
    micros, _, order_id = cursor.partition(".")
    return _EPOCH + dt.timedelta(microseconds=int(micros, 16)), uuid.UUID(hex=order_id)


_ORDERS = Order.__table__
_ORDER_COLUMNS = ("id", "user_id", "amount_cents", "currency", "status", "created_at", "updated_at")
# With its order.created event, in one statement (add_event_with).
_INSERT_ORDER = (
    _ORDERS.insert().values({column: sa.bindparam(column) for column in _ORDER_COLUMNS}).returning(_ORDERS.c.id)
)
# Only a new order moves. The values are bound at execute time, as arrays
# (one per column), so the statement is built and compiled once, whatever
# the number of settlements (the first for each order: settle says why).
_SETTLEMENT = ("order_id", "status", "reason")
_SETTLING = array_rows(
    "settling",
    {"order_id": _ORDERS.c.id.type, "status": _ORDERS.c.status.type, "reason": _ORDERS.c.reason.type},
    "all_",
)
_SETTLE_ALL = (
    sa.update(_ORDERS)
    .where(_ORDERS.c.id == _SETTLING.c.order_id, _ORDERS.c.status == NEW)
    .values(status=_SETTLING.c.status, reason=_SETTLING.c.reason, updated_at=sa.bindparam("now"))
    .returning(_ORDERS.c.id)
)


class PlacedOrder(NamedTuple):
    """An order just created, as ``create`` wrote it: the row's columns, for
    the answer, without an ORM instance that nothing would track."""

    id: uuid.UUID
    user_id: uuid.UUID
    amount_cents: int
    currency: str
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime
    reason: str | None = None

    def as_json(self) -> dict:
        return Order.as_json(self)


class Orders:
    """The orders of the request's (or the consumer's) transaction: creating
    one with its event, reading a customer's own, settling one by the saga."""

    def __init__(self, db: sa.Connection | DbSession, clock: Callable[[], dt.datetime]):
        self.db = db
        self.clock = clock

    def create(
        self, user_id: uuid.UUID, amount_cents: int, currency: str, request_id: str | None = None
    ) -> PlacedOrder:
        """The order and its ``order.created`` event, in the caller's transaction."""
        now = self.clock()
        order = PlacedOrder(uuid.uuid4(), user_id, amount_cents, currency, NEW, now, now)
        # Core: the row is written once here and answered from ``order``.
        add_event_with(
            self.db,
            _INSERT_ORDER,
            {column: getattr(order, column) for column in _ORDER_COLUMNS},
            OUTBOX,
            ORDER_CREATED,
            occurred_at=now,
            request_id=request_id,
            order_id=order.id,
            user_id=user_id,
            amount_cents=amount_cents,
            currency=currency,
            status=NEW,
        )
        return order

    def get_for_user(self, order_id: str, user_id: uuid.UUID) -> Order | None:
        """The order if it exists and belongs to the user; None otherwise, so a
        stranger cannot tell someone else's order from a missing one."""
        try:
            key = uuid.UUID(order_id)
        except ValueError:
            return None
        if not isinstance(self.db, DbSession):
            raise TypeError("get_for_user reads an ORM Order: it needs a Session, not a Connection")
        order = self.db.get(Order, key)
        if order is None or order.user_id != user_id:
            return None
        return order

    def list_for_user(self, user_id: uuid.UUID, limit: int, cursor: str | None) -> tuple[list[Order], str | None]:
        """A page of the user's orders, newest first, and the cursor of the next page."""
        orders = list(self.db.scalars(page_query(user_id, limit + 1, cursor)))
        if len(orders) > limit:
            return orders[:limit], encode_cursor(orders[limit - 1])
        return orders, None

    def settle(self, settlements: list[tuple[uuid.UUID, str, str | None]]) -> set[uuid.UUID]:
        """Move each ``new`` order of (order_id, status, reason) to its status,
        in order, as one statement; the ids of the orders that moved. An order
        unknown or settled already does not move (transitions happen only
        from ``new``), and only the first settlement of an order can move it,
        so a later one for the same order is left out of the statement,
        which could otherwise pick either."""
        first: dict[uuid.UUID, tuple[str, str | None]] = {}
        for order_id, status, reason in settlements:
            first.setdefault(order_id, (status, reason))
        if not first:
            return set()
        rows = [
            {"order_id": order_id, "status": status, "reason": reason} for order_id, (status, reason) in first.items()
        ]
        values = {**array_values(rows, _SETTLEMENT, "all_"), "now": self.clock()}
        return set(prepared.execute(self.db, _SETTLE_ALL, values).scalars())
