"""Request schemas of the orders API."""

from __future__ import annotations

from typing import ClassVar

import colander

from goshop_common.web.schemas import Pattern, QueryInteger, StrictString, body, field, list_of
from goshop_domain.money import amount_cents_node, currency_node
from goshop_domain.orders import order_body
from goshop_orders.idempotency import HEADER, KEY_REGEX, KEY_RULE
from goshop_orders.models import STATUSES
from goshop_orders.orders import CURSOR_REGEX

PAGE_MAX = 100
PAGE_DEFAULT = 20


class CreateOrderSchema(colander.MappingSchema):
    """POST /v1/orders: an amount in minor units and a currency, by the shared
    nodes' rules (goshop_common.web.schemas)."""

    component: ClassVar[str] = "NewOrder"

    amount_cents = amount_cents_node()
    currency = currency_node()


class ListOrdersSchema(colander.MappingSchema):
    """Query string: digits for ``limit``; ``cursor`` as a previous page gave it."""

    limit = colander.SchemaNode(
        QueryInteger(),
        missing=PAGE_DEFAULT,
        validator=colander.Range(
            1, PAGE_MAX, min_err="limit must be at least 1", max_err=f"limit must be at most {PAGE_MAX}"
        ),
    )
    limit.type_error_msg = "limit must be an integer"
    cursor = colander.SchemaNode(
        StrictString(),
        missing=None,
        # The pattern bounds the length too (CURSOR_MAX_LENGTH).
        validator=Pattern(CURSOR_REGEX, "invalid cursor"),
        description="The next_cursor of the previous page, unchanged.",
    )


# The header is read by the view (after the body is valid), with this rule.
IDEMPOTENCY_KEY = colander.SchemaNode(
    StrictString(),
    name=HEADER,
    missing=None,
    validator=Pattern(KEY_REGEX, KEY_RULE),
    description=(
        "Makes the request safe to retry. A key is bound to the caller and to the body of the first "
        "request that used it: the same key with the same body replays the first answer "
        "(Idempotent-Replayed: true) for as long as the key is kept (GOSHOP_IDEMPOTENCY_KEY_TTL_SECONDS, "
        "a day by default); the same key with another body is refused with 422, and while the first "
        "request is still running with 409. Use a new key, such as a random UUID, for each new order."
    ),
)

# Only documents the ``{id}`` of the order routes: the views read it from the
# matchdict, and a malformed one finds no order.
ORDER_ID = colander.SchemaNode(StrictString(), name="id", json_schema={"format": "uuid"})

ORDER = order_body(STATUSES)
ORDERS_PAGE = body(
    "page",
    list_of("orders", order_body(STATUSES)),
    field("next_cursor", nullable=True, description="null on the last page"),
    component="OrderPage",
)
ORDER_STATUS = body(
    "order_status",
    field("id", format="uuid"),
    field("status", enum=list(STATUSES)),
    field("reason", nullable=True),
    component="OrderState",
)
