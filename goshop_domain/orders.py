"""An order as the orders API shows it, and as ops shows it again."""

from __future__ import annotations

import colander

from goshop_common.web.schemas import body, field


def order_body(statuses: tuple[str, ...], name: str = "order") -> colander.SchemaNode:
    """An order as the orders API shows it (goshop_orders.models.Order.as_json),
    whose ``status`` is one of ``statuses``."""
    return body(
        name,
        field("id", format="uuid"),
        field("user_id", format="uuid"),
        field("amount_cents", colander.Integer(), minimum=1),
        field("currency", pattern="^[A-Z]{3}$"),
        field("status", enum=list(statuses)),
        field("reason", nullable=True),
        field("created_at", format="date-time"),
        field("updated_at", format="date-time"),
        component="Order",
    )
