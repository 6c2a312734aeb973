"""Finding orders the way an operator is asked about them: by the order's id,
pasted from anywhere, or by the customer's email."""

from __future__ import annotations

import dataclasses
import uuid

import sqlalchemy as sa

from goshop_orders.read_contract import ORDERS, order_as_json
from goshop_users.read_contract import USERS

LATEST = 20


def order_id_of(raw: str) -> uuid.UUID | None:
    """The order id in ``raw``: surrounding spaces, upper case and braces
    are how ids get pasted, and are forgiven; anything else is no id."""
    text = "".join(raw.split()).lower()
    if not (32 <= len(text) <= 38):  # a UUID's lengths: bare hex to {8-4-4-4-12}
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def email_of(raw: str) -> str | None:
    """``raw`` as the users service stores an email (trimmed, lower-case), or None."""
    text = raw.strip().lower()
    local, at, domain = text.partition("@")
    return text if at and local and domain and " " not in text else None


@dataclasses.dataclass(frozen=True)
class CustomerOrders:
    email: str
    user_id: uuid.UUID | None  # None: no account has that email
    orders: tuple[dict, ...]  # newest first, as the orders API shows them


def latest_orders(db, email: str, limit: int = LATEST) -> CustomerOrders:
    """The newest ``limit`` orders of the account whose email is ``email``."""
    user_id = db.execute(sa.select(USERS.c.id).where(USERS.c.email == email)).scalar_one_or_none()
    if user_id is None:
        return CustomerOrders(email, None, ())
    rows = db.execute(
        sa.select(ORDERS)
        .where(ORDERS.c.user_id == user_id)
        .order_by(ORDERS.c.created_at.desc(), ORDERS.c.id.desc())
        .limit(limit)
    )
    return CustomerOrders(email, user_id, tuple(order_as_json(row) for row in rows))
