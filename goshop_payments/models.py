"""The payments schema: one payment per order, plus the outbox and inbox."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from goshop_common.clock import rfc3339
from goshop_common.db.session import NAMING_CONVENTION
from goshop_common.messaging.inbox import inbox_table
from goshop_common.messaging.outbox import outbox_table

SCHEMA = "payments"

CONFIRMED = "confirmed"
FAILED = "failed"
# The compensations, when the order was cancelled without its payment (the
# payment timeout): a taken charge is given back; one not yet asked for is
# never taken.
REFUNDED = "refunded"
VOIDED = "voided"
STATUSES = (CONFIRMED, FAILED, REFUNDED, VOIDED)


class Base(DeclarativeBase):
    # Every table in the service's own schema, its constraints named as the
    # migrations name them.
    metadata = sa.MetaData(schema=SCHEMA, naming_convention=NAMING_CONVENTION)
    # Every model maps one Table (DeclarativeBase types it as any FromClause),
    # whose insert(), update() and delete() the service's statements build on.
    __table__: ClassVar[sa.Table]


class Payment(Base):
    """The provider's decision on one order's charge: ``confirmed``, or
    ``failed`` with its ``reason``; ``refunded`` (at ``refunded_at``) once its
    order was cancelled, or ``voided`` when the order was cancelled before
    payments was asked to charge it."""

    __tablename__ = "payments"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    # Unique: whatever is delivered twice, an order is charged at most once.
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    # From the order's event: the read API shows a payment to its owner only.
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    refunded_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))

    # Named explicitly: the naming convention's column_0_label would say
    # ix_payments_payments_user_id, and the migration created this name.
    __table_args__ = (sa.Index("ix_payments_user_id", "user_id"),)

    def as_json(self) -> dict:
        return {
            "id": str(self.id),
            "order_id": str(self.order_id),
            "amount_cents": self.amount_cents,
            "currency": self.currency,
            "status": self.status,
            "reason": self.reason,
            "created_at": rfc3339(self.created_at),
            "refunded_at": rfc3339(self.refunded_at) if self.refunded_at else None,
        }


OUTBOX = outbox_table(Base.metadata)
INBOX = inbox_table(Base.metadata)
