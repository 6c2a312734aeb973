"""An order's saga as one time-ordered list, read from the orders and
payments schemas: what happened to the order, and where it stands.

An entry from an outbox or inbox row carries the ``trace_id`` it was written
in, when the shop traced it (goshop_common.observability.tracing): where to
open that step in the trace backend. A checkout's entries share one; a
payment timeout's cancellation and what followed it have their own.

Only reads, through the read contracts of orders and payments
(goshop_orders.read_contract, goshop_payments.read_contract). The entries
come from four tables written by three kinds of process (the orders
service and consumer, the outboxer, the payments consumer); the ``source`` of an entry says which of them wrote it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import sqlalchemy as sa

from goshop_common.clock import rfc3339
from goshop_common.observability.tracing import trace_id_of
from goshop_domain.events import ORDER_CANCELLED as ORDER_CANCELLED_EVENT
from goshop_domain.events import ORDER_CREATED as ORDER_CREATED_EVENT
from goshop_domain.events import PAYMENT_REFUNDED as PAYMENT_REFUNDED_EVENT
from goshop_orders.read_contract import INITIAL_STATUS, ORDERS, ORDERS_INBOX, ORDERS_OUTBOX, order_as_json
from goshop_payments.read_contract import PAYMENTS, PAYMENTS_INBOX, PAYMENTS_OUTBOX, REFUNDED, VOIDED

# Entry kinds, in the saga's causal order.
ORDER_CREATED = "order created"
EVENT_PENDING = "event pending"
EVENT_PUBLISHED = "event published"
EVENT_APPLIED = "event applied"
PAYMENT_DECIDED = "payment decided"
STATUS_CHANGED = "status changed"
# The compensation of an order cancelled by the payment timeout: a payment
# taken is given back; one not taken yet is voided.
PAYMENT_REFUNDED = "payment refunded"
PAYMENT_VOIDED = "payment voided"

# Times come from two clocks: the services' (order and payment rows) and the
# database's (now() at transaction start: outbox and inbox rows). Within one
# transaction they can disagree by a fraction of a millisecond, so entries in
# the same millisecond — the precision shown — keep the saga's causal order.
_RANK = {
    ("orders", ORDER_CREATED): 0,
    ("payments", EVENT_APPLIED): 2,
    ("payments", PAYMENT_DECIDED): 3,
    ("orders", EVENT_APPLIED): 5,
    ("orders", STATUS_CHANGED): 6,
    ("payments", PAYMENT_VOIDED): 9,
    ("payments", PAYMENT_REFUNDED): 9,
}
# Entries about the compensation's events come after the status change.
_RANK_OF_EVENT: dict[tuple[str, object], int] = {
    ("outboxer", ORDER_CREATED_EVENT.name): 1,
    ("outboxer", ORDER_CANCELLED_EVENT.name): 7,
    ("payments", ORDER_CANCELLED_EVENT.name): 8,
    ("outboxer", PAYMENT_REFUNDED_EVENT.name): 10,
    ("orders", PAYMENT_REFUNDED_EVENT.name): 11,
}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One thing that happened to an order."""

    at: dt.datetime
    source: str  # "orders", "payments" or "outboxer"
    event: str
    detail: dict
    # The trace the row was written in, when it was traced.
    trace_id: str | None = None

    def as_json(self) -> dict:
        entry = {"at": rfc3339(self.at), "source": self.source, "event": self.event, "detail": self.detail}
        if self.trace_id is not None:
            entry["trace_id"] = self.trace_id
        return entry


@dataclasses.dataclass(frozen=True)
class OrderTimeline:
    """An order and what happened to it, oldest first."""

    order: dict  # the order as the orders API shows it
    entries: tuple[Entry, ...]

    def as_json(self) -> dict:
        return {
            "order": self.order,
            "entries": [entry.as_json() for entry in self.entries],
            "markdown": markdown(self.order, self.entries),
        }

    def markdown(self) -> str:
        return markdown(self.order, self.entries)

    def first(self, source: str, *events: str, event_type: str | None = None) -> Entry | None:
        """The earliest entry from ``source`` of one of ``events``; ``event_type``
        (a prefix: ``"payment."``) narrows entries about Kafka events."""
        for entry in self.entries:
            if entry.source != source or entry.event not in events:
                continue
            if event_type is None or str(entry.detail.get("event_type", "")).startswith(event_type):
                return entry
        return None


def in_time_order(entries) -> tuple[Entry, ...]:
    """``entries`` by time; within one millisecond, in the saga's order."""
    return tuple(sorted(entries, key=_sort_key))


def _sort_key(entry: Entry) -> tuple:
    rank = _RANK_OF_EVENT.get((entry.source, entry.detail.get("event_type")))
    if rank is None:
        rank = 4 if entry.source == "outboxer" else _RANK.get((entry.source, entry.event), 12)
    at = entry.at.astimezone(dt.UTC)
    return (at.replace(microsecond=at.microsecond // 1000 * 1000), rank)


def parse_order_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except (ValueError, TypeError):
        return None


class Timeline:
    """Builds an order's timeline from the database session ``db``.

    Outbox rows are found by their Kafka key (the order id) and inbox rows by
    the event ids of those outbox rows: an event that is not in an outbox
    (forged, or from another system) is not part of the order's story.
    """

    def __init__(self, db):
        self.db = db

    def for_order(self, order_id: uuid.UUID) -> OrderTimeline | None:
        """The order's timeline, or None when there is no such order."""
        order = self.db.execute(sa.select(ORDERS).where(ORDERS.c.id == order_id)).first()
        if order is None:
            return None
        key = str(order_id)
        created = {"amount_cents": order.amount_cents, "currency": order.currency, "user_id": str(order.user_id)}
        entries = [Entry(order.created_at, "orders", ORDER_CREATED, created)]

        order_events = self._outbox(ORDERS_OUTBOX, key)
        entries += [_outbox_entry(row) for row in order_events]
        entries += [_inbox_entry("payments", row) for row in self._inbox(PAYMENTS_INBOX, order_events)]

        payments = self.db.execute(sa.select(PAYMENTS).where(PAYMENTS.c.order_id == order_id)).mappings()
        entries += [entry for row in payments for entry in _payment_entries(row)]
        payment_events = self._outbox(PAYMENTS_OUTBOX, key)
        entries += [_outbox_entry(row) for row in payment_events]
        entries += [_inbox_entry("orders", row) for row in self._inbox(ORDERS_INBOX, payment_events)]

        if order.status != INITIAL_STATUS:
            change = {"from": INITIAL_STATUS, "to": order.status, "reason": order.reason}
            entries.append(Entry(order.updated_at, "orders", STATUS_CHANGED, change))
        return OrderTimeline(order_as_json(order), in_time_order(entries))

    def _outbox(self, table: sa.Table, key: str) -> list:
        return list(self.db.execute(outbox_rows_of(table, key)).mappings())

    def _inbox(self, table: sa.Table, outbox_rows: list) -> list:
        """The inbox rows of the events in ``outbox_rows``: their consumption."""
        event_ids = [row["event_id"] for row in outbox_rows]
        if not event_ids:
            return []
        return list(self.db.execute(sa.select(table).where(table.c.event_id.in_(event_ids))).mappings())


def outbox_rows_of(table: sa.Table, key: str) -> sa.Select:
    """An outbox's rows of one key (an order's id), oldest first. Found
    through the outbox's key index (ix_outbox_key): the outbox holds a week
    of the shop's events, and a scan of it for one order grows with the shop."""
    return sa.select(table).where(table.c.key == key).order_by(table.c.id)


def _payment_entries(row) -> list[Entry]:
    """A payment's decision; a refunded one's refund after it (it was
    confirmed when decided); a voided one's voiding, in place of a decision."""
    detail = {
        "payment_id": str(row["id"]),
        "status": row["status"],
        "reason": row["reason"],
        "amount_cents": row["amount_cents"],
        "currency": row["currency"],
    }
    if row["status"] == VOIDED:
        return [Entry(row["created_at"], "payments", PAYMENT_VOIDED, detail)]
    if row["status"] != REFUNDED:
        return [Entry(row["created_at"], "payments", PAYMENT_DECIDED, detail)]
    decided = {**detail, "status": "confirmed", "reason": None}
    return [
        Entry(row["created_at"], "payments", PAYMENT_DECIDED, decided),
        Entry(row["refunded_at"], "payments", PAYMENT_REFUNDED, detail),
    ]


def _outbox_entry(row) -> Entry:
    """A published row at its publication; a pending one at its queueing,
    with what the outboxer last ran into."""
    detail = {
        "event_type": row["event_type"],
        "event_id": str(row["event_id"]),
        "topic": row["topic"],
        "attempts": row["attempts"],
        "queued_at": rfc3339(row["created_at"]),
    }
    trace_id = trace_id_of(row["traceparent"])
    if row["published_at"] is not None:
        return Entry(row["published_at"], "outboxer", EVENT_PUBLISHED, detail, trace_id)
    detail["last_error"] = row["last_error"]
    detail["next_attempt_at"] = rfc3339(row["next_attempt_at"])
    return Entry(row["created_at"], "outboxer", EVENT_PENDING, detail, trace_id)


def _inbox_entry(source: str, row) -> Entry:
    return Entry(
        row["received_at"],
        source,
        EVENT_APPLIED,
        {
            "event_type": row["event_type"],
            "event_id": str(row["event_id"]),
            "topic": row["topic"],
            "partition": row["partition"],
            "offset": row["offset"],
        },
        trace_id_of(row["traceparent"]),
    )


def _cell(value) -> str:
    # A pipe or a line break inside a cell would break the table.
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _detail_text(detail: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in detail.items() if value is not None)


def markdown(order: dict, entries) -> str:
    """The timeline as a short markdown document: the order, then a table."""
    status = order["status"] + (f" ({order['reason']})" if order.get("reason") else "")
    lines = [
        f"# Order {order['id']}",
        "",
        f"- status: **{_cell(status)}**",
        f"- amount: {order['amount_cents']} {order['currency']} (minor units)",
        f"- created: {order['created_at']}, last updated: {order['updated_at']}",
        "",
        "| at | source | event | detail | trace |",
        "|---|---|---|---|---|",
    ]
    for entry in entries:
        lines.append(
            f"| {rfc3339(entry.at)} | {entry.source} | {_cell(entry.event)} | {_cell(_detail_text(entry.detail))} "
            f"| {entry.trace_id or ''} |"
        )
    return "\n".join(lines) + "\n"
