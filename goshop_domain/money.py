"""Money as the shop's APIs take it: an amount in minor units and an ISO 4217
currency, as colander nodes whose bounds and default are settings
(goshop_domain.settings.OrderMoneySettings, bound by schema.bind(settings=...)).
Every rule a node enforces is also what the OpenAPI document says about it."""

from __future__ import annotations

import colander

from goshop_common.web.schemas import StrictInteger, StrictString
from goshop_domain.currencies import ISO_4217


class Currency:
    """A colander validator: an ISO 4217 code as the standard writes it
    (upper case), one of goshop_domain.currencies; the document lists them."""

    def __init__(self, msg: str):
        self.msg = msg
        self.json_schema = {"enum": sorted(ISO_4217)}

    def __call__(self, node, value):
        if value not in ISO_4217:
            raise colander.Invalid(node, self.msg)


class _AmountRange:
    """amount_cents' bounds, a message for each side. The maximum is a
    setting, so this is built when the schema is bound (_amount_range)."""

    def __init__(self, maximum: int):
        self.maximum = maximum
        self.json_schema = {"minimum": 1, "maximum": maximum}

    def __call__(self, node, value):
        if value <= 0:
            raise colander.Invalid(node, "amount_cents must be a positive integer")
        if value > self.maximum:
            raise colander.Invalid(node, f"amount_cents must not exceed {self.maximum}")


# Deferred: resolved by schema.bind(settings=...), which the REST validators
# and the OpenAPI generator both call.
@colander.deferred
def _amount_range(node, kw):
    return _AmountRange(kw["settings"].order_max_amount_cents)


def amount_cents_node() -> colander.SchemaNode:
    """Money in minor units: a positive integer up to ``order_max_amount_cents``."""
    node = colander.SchemaNode(
        StrictInteger(), name="amount_cents", missing_msg="amount_cents is required", validator=_amount_range
    )
    node.type_error_msg = "amount_cents must be a positive integer"
    return node


@colander.deferred
def _default_currency(node, kw):
    return kw["settings"].default_currency


def currency_node() -> colander.SchemaNode:
    """An ISO 4217 alphabetic code, upper case; the default currency when
    absent."""
    message = "currency must be an ISO 4217 code in capitals, such as RUB"
    node = colander.SchemaNode(
        StrictString(),
        name="currency",
        missing=_default_currency,
        validator=Currency(message),
        description="ISO 4217 code, upper case; absent or null: the default.",
        json_schema={"nullable": True},
    )
    # One named enum (a generated client's ``Currency``), however many bodies take it.
    node.component = "Currency"
    node.type_error_msg = message
    return node
