"""Request schemas of the orders API."""

from __future__ import annotations

import colander

from goshop_common.schemas import StrictString, amount_cents_node, currency_node

PAGE_MAX = 100
PAGE_DEFAULT = 20


class CreateOrderSchema(colander.MappingSchema):
    amount_cents = amount_cents_node()
    currency = currency_node()


class ListOrdersSchema(colander.MappingSchema):
    """Query string: colander.Integer parses "20" from the URL, unlike bodies."""

    limit = colander.SchemaNode(
        colander.Integer(),
        missing=PAGE_DEFAULT,
        validator=colander.Range(
            1, PAGE_MAX, min_err="limit must be at least 1", max_err=f"limit must be at most {PAGE_MAX}"
        ),
    )
    cursor = colander.SchemaNode(StrictString(), missing=None, validator=colander.Length(max=200))
