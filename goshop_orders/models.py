"""The orders schema: orders, idempotency keys, and the outbox and inbox."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from goshop_common.clock import rfc3339
from goshop_common.db.session import NAMING_CONVENTION
from goshop_common.messaging.inbox import inbox_table
from goshop_common.messaging.outbox import outbox_table

SCHEMA = "orders"

NEW = "new"
PAID = "paid"
CANCELLED = "cancelled"
STATUSES = (NEW, PAID, CANCELLED)


class Base(DeclarativeBase):
    # Every table in the service's own schema, its constraints named as the
    # migrations name them.
    metadata = sa.MetaData(schema=SCHEMA, naming_convention=NAMING_CONVENTION)
    # Every model maps one Table (DeclarativeBase types it as any FromClause),
    # whose insert(), update() and delete() the service's statements build on.
    __table__: ClassVar[sa.Table]


class OrderFields(Protocol):
    """What ``Order.as_json`` reads: an Order, or goshop_orders.orders.PlacedOrder."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def amount_cents(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def created_at(self) -> dt.datetime: ...
    @property
    def updated_at(self) -> dt.datetime: ...


class Order(Base):
    """One order: ``new`` until payments decides, then ``paid`` or
    ``cancelled`` with the failed payment's ``reason`` — or, when no payment
    came in time, ``cancelled`` with ``payment_timeout`` (goshop_orders.sweeper)."""

    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))

    # "My orders, newest first" walks this index and nothing else.
    # The payment-timeout sweep (goshop_orders.sweeper) walks the new orders
    # by age and nothing else: a settled order leaves this index.
    # The ops console counts the orders settled in the last minutes from the
    # last: a settled order enters it.
    __table_args__ = (
        sa.Index("ix_orders_user_newest", "user_id", sa.text("created_at DESC"), sa.text("id DESC")),
        sa.Index("ix_orders_new_by_age", "created_at", postgresql_where=sa.text("status = 'new'")),
        sa.Index("ix_orders_settled_at", "updated_at", postgresql_where=sa.text("status IN ('paid', 'cancelled')")),
    )

    def as_json(self: OrderFields) -> dict:
        """The order as the API shows it (goshop_domain.orders.order_body)."""
        return {
            "id": str(self.id),
            "user_id": str(self.user_id),
            "amount_cents": self.amount_cents,
            "currency": self.currency,
            "status": self.status,
            "reason": self.reason,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        }


class IdempotencyKey(Base):
    """The first response to a (user, Idempotency-Key), stored in the same
    transaction as the order it created."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    key: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    request_hash: Mapped[str] = mapped_column(sa.Text)
    response_status: Mapped[int] = mapped_column(sa.Integer)
    response_body: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))

    # How retention finds the expired keys (goshop_orders.retention).
    __table_args__ = (sa.Index("ix_idempotency_keys_created_at", "created_at"),)


# In this schema, so an order and its event commit in one transaction, and
# an event is recorded as applied in the same one as its effect.
OUTBOX = outbox_table(Base.metadata)
INBOX = inbox_table(Base.metadata)
