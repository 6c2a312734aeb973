"""The event contract: every event goshop services send one another.

An event is a JSON object on a Kafka topic. Its envelope (``event_id``,
``event``, ``version``, ``occurred_at``) is the same for all and read by the
kernel (goshop_common.messaging.envelope); each event's fields are declared
here, once, as colander schemas, and registered with the kernel so that its
consumers refuse a malformed event before any handler sees it.

How the contract may change:

- Adding an optional field is compatible: readers ignore fields they do not
  know (``unknown="ignore"``) and ``version`` stays.
- Removing or retyping a field, or adding a required one, is a new
  ``version``. Readers accept only the versions in ``READABLE_VERSIONS``, so
  the consumers learn version N+1 (and keep N) before any producer writes it.

The Kafka key of every event is its ``order_id``: one order's events stay in
one partition, in the order they were written.
"""

from __future__ import annotations

import colander

from goshop_common.messaging.envelope import (
    ID_HEADER,
    READABLE_VERSIONS,
    REQUEST_ID_HEADER,
    TYPE_HEADER,
    VERSION,
    EventType,
    InvalidEvent,
    dead_letter_topic,
    event_headers,
    fields_node,
    one_of_node,
    read_envelope,
    read_fields,
    register,
    text_headers,
    text_node,
    uuid_node,
)
from goshop_common.web.schemas import Pattern, StrictInteger, StrictString

# The kernel's half of the contract, named here too for whoever reads events.
__all__ = [
    "ID_HEADER",
    "READABLE_VERSIONS",
    "REQUEST_ID_HEADER",
    "TYPE_HEADER",
    "VERSION",
    "EventType",
    "InvalidEvent",
    "dead_letter_topic",
    "event_headers",
    "read_envelope",
    "read_fields",
    "text_headers",
]

ORDERS_TOPIC = "orders.events"
PAYMENTS_TOPIC = "payments.events"
TOPICS = (ORDERS_TOPIC, PAYMENTS_TOPIC)
# Where a consumer parks a topic's poison records (goshop_common.messaging.deadletters).
DEAD_LETTER_TOPICS = tuple(dead_letter_topic(topic) for topic in TOPICS)
# Every topic the shop uses, as make run and the tests' broker create them.
ALL_TOPICS = TOPICS + DEAD_LETTER_TOPICS


def _amount() -> colander.SchemaNode:
    return colander.SchemaNode(StrictInteger(), name="amount_cents", validator=colander.Range(min=1))


def _currency() -> colander.SchemaNode:
    return colander.SchemaNode(StrictString(), name="currency", validator=Pattern("[A-Z]{3}", "must be ISO 4217"))


ORDER_CREATED = EventType(
    "order.created",
    ORDERS_TOPIC,
    fields_node(uuid_node("order_id"), uuid_node("user_id"), _amount(), _currency(), one_of_node("status", "new")),
    "An order was placed and awaits its payment.",
)


def _paymentfields_node(status: str, reason_nullable: bool) -> colander.SchemaNode:
    """What both payment events carry: the payment, its order and customer,
    the amount, the outcome and its reason."""
    return fields_node(
        uuid_node("payment_id"),
        uuid_node("order_id"),
        uuid_node("user_id"),
        _amount(),
        _currency(),
        one_of_node("status", status),
        text_node("reason", nullable=reason_nullable),
    )


PAYMENT_CONFIRMED = EventType(
    "payment.confirmed",
    PAYMENTS_TOPIC,
    _paymentfields_node("confirmed", reason_nullable=True),
    "The order's payment was taken.",
)
PAYMENT_FAILED = EventType(
    "payment.failed",
    PAYMENTS_TOPIC,
    _paymentfields_node("failed", reason_nullable=False),
    "The order's payment was refused; ``reason`` says why.",
)

# The compensations: an order whose payment did not come in time is
# cancelled by the orders sweeper; payments answers with a refund when it had
# taken the money (and voids the charge when it had not yet been asked).
ORDER_CANCELLED = EventType(
    "order.cancelled",
    ORDERS_TOPIC,
    fields_node(
        uuid_node("order_id"),
        uuid_node("user_id"),
        _amount(),
        _currency(),
        one_of_node("status", "cancelled"),
        text_node("reason"),
    ),
    "A new order was cancelled by orders itself (``reason``: ``payment_timeout``); a payment taken for it is refunded.",
)
PAYMENT_REFUNDED = EventType(
    "payment.refunded",
    PAYMENTS_TOPIC,
    _paymentfields_node("refunded", reason_nullable=False),
    "A confirmed payment was given back because its order was cancelled; ``reason`` is the order's.",
)

EVENT_TYPES = {
    event_type.name: event_type
    for event_type in (ORDER_CREATED, ORDER_CANCELLED, PAYMENT_CONFIRMED, PAYMENT_FAILED, PAYMENT_REFUNDED)
}
register(*EVENT_TYPES.values())
