"""The envelope every event on the broker shares, and the mechanism that reads
and writes events: what the outbox, the relay and the consumers need. Which
events exist (names, topics, fields) is the domain's: goshop_domain.events
declares them and ``register``s them here; this kernel knows none.

An event is a JSON object on a Kafka topic. Its envelope (``event_id``,
``event``, ``version``, ``occurred_at``) is the same for all. Producers build
their events with ``EventType.build`` (a producer bug fails the producing
transaction, so a malformed event never reaches the outbox) and consumers
read them with ``read_envelope`` and ``read_fields`` (a malformed event is
refused before any handler sees it). Readers accept only the versions in
``READABLE_VERSIONS``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

import colander

from goshop_common.web.schemas import UUID_REGEX, Pattern, StrictInteger, StrictString

VERSION = 1
READABLE_VERSIONS = frozenset({1})

# Where a consumer parks a topic's poison records (goshop_common.messaging.deadletters).
DEAD_LETTER_SUFFIX = ".dlq"


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

    def deserialize(self, node: colander.SchemaNode, cstruct: object) -> Any:
        value = super().deserialize(node, cstruct)
        if value is colander.null:
            return value
        self._pattern(node, value)
        return uuid.UUID(value)

    def serialize(self, node: colander.SchemaNode, appstruct: object) -> Any:
        if appstruct is colander.null or appstruct is None:
            return colander.null
        return str(appstruct)


class _Instant(StrictString):
    """An RFC 3339 UTC instant, as ``envelope`` writes it."""

    def deserialize(self, node: colander.SchemaNode, cstruct: object) -> Any:
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


def uuid_node(name: str) -> colander.SchemaNode:
    return colander.SchemaNode(_Uuid(), name=name)


def one_of_node(name: str, *values: str) -> colander.SchemaNode:
    return colander.SchemaNode(StrictString(), name=name, validator=colander.OneOf(values))


def text_node(name: str, nullable: bool = False) -> colander.SchemaNode:
    # A required key whose value may be JSON null: "no reason" is said, not omitted.
    return colander.SchemaNode(
        StrictString(allow_empty=True), name=name, missing=None if nullable else colander.required
    )


def fields_node(*children: colander.SchemaNode) -> colander.SchemaNode:
    node = colander.SchemaNode(colander.Mapping(unknown="ignore"))
    for child in children:
        node.add(child)
    return node


ENVELOPE = fields_node(
    uuid_node("event_id"),
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

    def build(self, occurred_at: dt.datetime, event_id: uuid.UUID | None = None, **fields: Any) -> dict[str, Any]:
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

    def key(self, body: dict[str, Any]) -> str:
        """The Kafka key: the order the event is about."""
        return str(body["order_id"])


# The contract: every event type a reader knows, by name (goshop_domain.events
# registers them).
_CONTRACT: dict[str, EventType] = {}


def register(*event_types: EventType) -> None:
    """Make ``event_types`` known to ``read_fields``; a name twice must be the same type."""
    for event_type in event_types:
        if _CONTRACT.setdefault(event_type.name, event_type) is not event_type:
            raise ValueError(f"event type {event_type.name} is registered twice")


def _deserialize(schema: colander.SchemaNode, body: dict[str, Any], what: str) -> dict[str, Any]:
    try:
        read: dict[str, Any] = schema.deserialize(body)
        return read
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


def read_envelope(body: object) -> Envelope:
    """The envelope of a decoded event; ``InvalidEvent`` if it has none."""
    if not isinstance(body, dict):
        raise InvalidEvent("not a JSON object")
    envelope = _deserialize(ENVELOPE, body, "envelope")
    if envelope["version"] not in READABLE_VERSIONS:
        raise InvalidEvent(f"version {envelope['version']} is not one this reader knows")
    return Envelope(envelope["event_id"], envelope["event"], envelope["version"], envelope["occurred_at"])


def read_fields(event_type: str, topic: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The fields of a known event, read (UUIDs as ``uuid.UUID``); None for a
    type the contract does not know (a newer producer's: not ours to judge).
    ``InvalidEvent`` when a known event breaks its schema or came on the
    wrong topic."""
    contract = _CONTRACT.get(event_type)
    if contract is None:
        return None
    if topic != contract.topic:
        raise InvalidEvent(f"{event_type} belongs on {contract.topic}, not {topic}")
    return _deserialize(contract.fields, body, event_type)


def text_headers(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
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
