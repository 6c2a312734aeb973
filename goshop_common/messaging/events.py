"""The event contract: every event goshop services send one another.

An event is a JSON object on a Kafka topic. Its envelope (``event_id``,
``event``, ``version``, ``occurred_at``) is the same for all; its fields are
declared here, once, as colander schemas. Producers build their events with
``EventType.build`` (a producer bug fails the producing transaction, so a
malformed event never reaches the outbox) and consumers read them with
``read`` (a malformed event is refused before any handler sees it).

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

import dataclasses
import datetime as dt
import uuid

import colander

from goshop_common.web.schemas import UUID_REGEX, Pattern, StrictInteger, StrictString

VERSION = 1
READABLE_VERSIONS = frozenset({1})

ORDERS_TOPIC = "orders.events"
PAYMENTS_TOPIC = "payments.events"
TOPICS = (ORDERS_TOPIC, PAYMENTS_TOPIC)
# Where a consumer parks a topic's poison records (goshop_common.messaging.deadletters).
DEAD_LETTER_SUFFIX = ".dlq"
DEAD_LETTER_TOPICS = tuple(f"{topic}{DEAD_LETTER_SUFFIX}" for topic in TOPICS)


def dead_letter_topic(topic: str) -> str:
    return f"{topic}{DEAD_LETTER_SUFFIX}"


# What the relay puts in Kafka headers, so a consumer (or a person with
# kcat) can route or trace a record without parsing its JSON.
TYPE_HEADER = "event-type"
ID_HEADER = "event-id"
REQUEST_ID_HEADER = "request-id"


class InvalidEvent(ValueError):
    """The event does not satisfy the contract; ``str()`` says which rule."""


class _Uuid(StrictString):
    """A UUID string on the wire, ``uuid.UUID`` once read."""

    _pattern = Pattern(UUID_REGEX, "must be a UUID")

    def deserialize(self, node, cstruct):
        value = super().deserialize(node, cstruct)
        if value is colander.null:
            return value
        self._pattern(node, value)
        return uuid.UUID(value)

    def serialize(self, node, appstruct):
        if appstruct is colander.null or appstruct is None:
            return colander.null
        return str(appstruct)


class _Instant(StrictString):
    """An RFC 3339 UTC instant, as ``envelope`` writes it."""

    def deserialize(self, node, cstruct):
        value = super().deserialize(node, cstruct)
        if value is colander.null:
            return value
        try:
            instant = dt.datetime.fromisoformat(value)
        except ValueError:
            raise colander.Invalid(node, "must be an RFC 3339 date-time") from None
        if instant.tzinfo is None:
            raise colander.Invalid(node, "must carry a time zone")
        return instant


def _uuid(name: str) -> colander.SchemaNode:
    return colander.SchemaNode(_Uuid(), name=name)


def _amount() -> colander.SchemaNode:
    return colander.SchemaNode(StrictInteger(), name="amount_cents", validator=colander.Range(min=1))


def _currency() -> colander.SchemaNode:
    return colander.SchemaNode(StrictString(), name="currency", validator=Pattern("[A-Z]{3}", "must be ISO 4217"))


def _one_of(name: str, *values: str) -> colander.SchemaNode:
    return colander.SchemaNode(StrictString(), name=name, validator=colander.OneOf(values))


def _text(name: str, nullable: bool = False) -> colander.SchemaNode:
    # A required key whose value may be JSON null: "no reason" is said, not omitted.
    return colander.SchemaNode(
        StrictString(allow_empty=True), name=name, missing=None if nullable else colander.required
    )


def _fields(*children: colander.SchemaNode) -> colander.SchemaNode:
    node = colander.SchemaNode(colander.Mapping(unknown="ignore"))
    for child in children:
        node.add(child)
    return node


ENVELOPE = _fields(
    _uuid("event_id"),
    colander.SchemaNode(StrictString(), name="event"),
    colander.SchemaNode(StrictInteger(), name="version"),
    colander.SchemaNode(_Instant(), name="occurred_at"),
)


@dataclasses.dataclass(frozen=True)
class EventType:
    """One kind of event: its name, the topic it travels on, and its fields."""

    name: str
    topic: str
    fields: colander.SchemaNode
    description: str

    def build(self, occurred_at: dt.datetime, event_id: uuid.UUID | None = None, **fields) -> dict:
        """The event as JSON-ready data; ``InvalidEvent`` when ``fields`` break the contract.

        Fields are given as Python values (UUIDs, ints, str, None) and written
        as the contract spells them on the wire."""
        wire = {name: str(value) if isinstance(value, uuid.UUID) else value for name, value in fields.items()}
        unknown = set(wire) - {child.name for child in self.fields.children}
        if unknown:
            raise InvalidEvent(f"{self.name} has no field {sorted(unknown)}")
        body = {
            "event_id": str(event_id or uuid.uuid4()),
            "event": self.name,
            "version": VERSION,
            "occurred_at": occurred_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            **wire,
        }
        _deserialize(self.fields, body, self.name)
        return body

    def key(self, body: dict) -> str:
        """The Kafka key: the order the event is about."""
        return str(body["order_id"])


ORDER_CREATED = EventType(
    "order.created",
    ORDERS_TOPIC,
    _fields(_uuid("order_id"), _uuid("user_id"), _amount(), _currency(), _one_of("status", "new")),
    "An order was placed and awaits its payment.",
)


def _payment_fields(status: str, reason_nullable: bool) -> colander.SchemaNode:
    """What both payment events carry: the payment, its order and customer,
    the amount, the outcome and its reason."""
    return _fields(
        _uuid("payment_id"),
        _uuid("order_id"),
        _uuid("user_id"),
        _amount(),
        _currency(),
        _one_of("status", status),
        _text("reason", nullable=reason_nullable),
    )


PAYMENT_CONFIRMED = EventType(
    "payment.confirmed",
    PAYMENTS_TOPIC,
    _payment_fields("confirmed", reason_nullable=True),
    "The order's payment was taken.",
)
PAYMENT_FAILED = EventType(
    "payment.failed",
    PAYMENTS_TOPIC,
    _payment_fields("failed", reason_nullable=False),
    "The order's payment was refused; ``reason`` says why.",
)

# The compensations: an order whose payment did not come in time is
# cancelled by the orders sweeper; payments answers with a refund when it had
# taken the money (and voids the charge when it had not yet been asked).
ORDER_CANCELLED = EventType(
    "order.cancelled",
    ORDERS_TOPIC,
    _fields(
        _uuid("order_id"),
        _uuid("user_id"),
        _amount(),
        _currency(),
        _one_of("status", "cancelled"),
        _text("reason"),
    ),
    "A new order was cancelled by orders itself (``reason``: ``payment_timeout``); a payment taken for it is refunded.",
)
PAYMENT_REFUNDED = EventType(
    "payment.refunded",
    PAYMENTS_TOPIC,
    _payment_fields("refunded", reason_nullable=False),
    "A confirmed payment was given back because its order was cancelled; ``reason`` is the order's.",
)

EVENT_TYPES = {
    event_type.name: event_type
    for event_type in (ORDER_CREATED, ORDER_CANCELLED, PAYMENT_CONFIRMED, PAYMENT_FAILED, PAYMENT_REFUNDED)
}


def _deserialize(schema: colander.SchemaNode, body: dict, what: str) -> dict:
    try:
        return schema.deserialize(body)
    except colander.Invalid as exc:
        problems = "; ".join(f"{field or what}: {message}" for field, message in sorted(exc.asdict().items()))
        raise InvalidEvent(problems) from None


@dataclasses.dataclass(frozen=True)
class Envelope:
    """What every event says about itself."""

    event_id: uuid.UUID
    type: str
    version: int
    occurred_at: dt.datetime


def read_envelope(body) -> Envelope:
    """The envelope of a decoded event; ``InvalidEvent`` if it has none."""
    if not isinstance(body, dict):
        raise InvalidEvent("not a JSON object")
    envelope = _deserialize(ENVELOPE, body, "envelope")
    if envelope["version"] not in READABLE_VERSIONS:
        raise InvalidEvent(f"version {envelope['version']} is not one this reader knows")
    return Envelope(envelope["event_id"], envelope["event"], envelope["version"], envelope["occurred_at"])


def read_fields(event_type: str, topic: str, body: dict) -> dict | None:
    """The fields of a known event, read (UUIDs as ``uuid.UUID``); None for a
    type the contract does not know (a newer producer's: not ours to judge).
    ``InvalidEvent`` when a known event breaks its schema or came on the
    wrong topic."""
    contract = EVENT_TYPES.get(event_type)
    if contract is None:
        return None
    if topic != contract.topic:
        raise InvalidEvent(f"{event_type} belongs on {contract.topic}, not {topic}")
    return _deserialize(contract.fields, body, event_type)


def text_headers(headers) -> dict[str, str]:
    """Kafka headers (name, bytes) as text, by name; a value that is not
    UTF-8 is left out (not ours to read)."""
    decoded = {}
    for name, value in headers or ():
        try:
            decoded[name] = value.decode() if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError:
            continue
    return decoded


def event_headers(event_type: str, event_id: str | uuid.UUID, request_id: str | None = None) -> list[tuple[str, bytes]]:
    """Kafka headers for an event: its type, its id and, when known, the
    request that caused it."""
    headers = [(TYPE_HEADER, event_type.encode()), (ID_HEADER, str(event_id).encode())]
    if request_id is not None:
        headers.append((REQUEST_ID_HEADER, request_id.encode()))
    return headers
