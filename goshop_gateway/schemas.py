"""The gateway validates checkout itself: a bad request never leaves the edge."""

import colander

from goshop_common.web.schemas import amount_cents_node, currency_node


class CheckoutSchema(colander.MappingSchema):
    amount_cents = amount_cents_node()
    currency = currency_node()
