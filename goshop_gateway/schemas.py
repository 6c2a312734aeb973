"""The gateway validates checkout itself: a bad request never leaves the edge."""

from typing import ClassVar

import colander

from goshop_domain.money import amount_cents_node, currency_node


class CheckoutSchema(colander.MappingSchema):
    """POST /v1/checkout: what POST /v1/orders takes, checked at the edge."""

    component: ClassVar[str] = "Checkout"
    amount_cents = amount_cents_node()
    currency = currency_node()
