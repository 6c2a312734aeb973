"""An order's saga drawn: one lane per part of the shop, each step placed in
time, with the time to the next step.

Plain data for the order page's SVG (goshop_ops.console.templates): the
template only lays out what is computed here, so the placing is tested
without a browser.
"""

from __future__ import annotations

import dataclasses

from goshop_common.clock import rfc3339
from goshop_ops.timeline import (
    EVENT_APPLIED,
    EVENT_PENDING,
    EVENT_PUBLISHED,
    ORDER_CREATED,
    PAYMENT_DECIDED,
    PAYMENT_REFUNDED,
    PAYMENT_VOIDED,
    STATUS_CHANGED,
    Entry,
    OrderTimeline,
)
from goshop_orders.read_contract import PAYMENT_TIMEOUT_REASON

GATEWAY = "gateway"
ORDERS = "orders"
OUTBOXER = "outboxer"
BROKER = "broker"
PAYMENTS = "payments"
ORDERS_CONSUMER = "orders consumer"
LANES = (GATEWAY, ORDERS, OUTBOXER, BROKER, PAYMENTS, ORDERS_CONSUMER)

# The SVG's user units: the width the steps spread over, after the lane names.
WIDTH = 1000
LANE_LABEL_WIDTH = 150
LANE_HEIGHT = 56
MARGIN = 28
# Half of a step's place is its rank, half its time: steps a millisecond
# apart stay apart, and a payment that took minutes still looks long.
_BY_RANK = 0.5


@dataclasses.dataclass(frozen=True)
class Step:
    """One thing drawn: where (lane), when, what, and the time to the next step."""

    number: int
    lane: str
    at: str  # RFC 3339, UTC
    label: str
    detail: str = ""
    event_id: str | None = None
    to_next_ms: float | None = None
    x: float = 0.0
    y: float = 0.0


@dataclasses.dataclass(frozen=True)
class Drawing:
    steps: tuple[Step, ...]
    status: str
    reason: str | None
    width: int = WIDTH + LANE_LABEL_WIDTH + 2 * MARGIN
    height: int = len(LANES) * LANE_HEIGHT + 2 * MARGIN

    # Where the lanes' lines begin, after their names.
    lane_start: int = MARGIN + LANE_LABEL_WIDTH - 8

    @property
    def lanes(self) -> tuple[tuple[str, float], ...]:
        """Each lane's name and the y of its line."""
        return tuple((lane, lane_y(lane)) for lane in LANES)

    @property
    def links(self) -> tuple[tuple[Step, Step], ...]:
        """Consecutive steps, joined by a line labelled with the time between them."""
        return tuple(zip(self.steps, self.steps[1:], strict=False))


def lane_y(lane: str) -> float:
    return MARGIN + LANES.index(lane) * LANE_HEIGHT + LANE_HEIGHT / 2


def _event(entry: Entry) -> str:
    return str(entry.detail.get("event_type", ""))


def _steps_of(entry: Entry) -> list[tuple[str, str, str]]:
    """(lane, label, detail) for what ``entry`` says happened."""
    detail = entry.detail
    if entry.event == ORDER_CREATED:
        money = f"{detail.get('amount_cents')} {detail.get('currency')} (minor units)"
        return [
            (GATEWAY, "checkout request", "drawn at the order's creation: the gateway keeps no record of its own"),
            (ORDERS, "order created", money),
        ]
    if entry.event == EVENT_PENDING:
        error = detail.get("last_error") or "not tried yet"
        return [(OUTBOXER, f"{_event(entry)} not published", f"{detail.get('attempts')} attempts; {error}")]
    if entry.event == EVENT_PUBLISHED:
        return [
            (OUTBOXER, f"{_event(entry)} published", f"queued at {detail.get('queued_at')}"),
            (BROKER, f"{_event(entry)} on {detail.get('topic')}", "acknowledged by the broker"),
        ]
    if entry.event == EVENT_APPLIED:
        lane = PAYMENTS if entry.source == "payments" else ORDERS_CONSUMER
        where = f"{detail.get('topic')} partition {detail.get('partition')} offset {detail.get('offset')}"
        return [(lane, f"{_event(entry)} applied", where)]
    if entry.event in (PAYMENT_DECIDED, PAYMENT_REFUNDED, PAYMENT_VOIDED):
        label = {PAYMENT_DECIDED: "payment", PAYMENT_REFUNDED: "payment refunded", PAYMENT_VOIDED: "payment voided"}
        declined = f" ({detail['reason']})" if detail.get("reason") else ""
        what = f"{label[entry.event]} {detail.get('status')}{declined}"
        return [(PAYMENTS, what, f"payment {detail.get('payment_id')}")]
    if entry.event == STATUS_CHANGED:
        reason = detail.get("reason")
        # The payment timeout is the orders side's own sweep, not a consumed event.
        lane = ORDERS if reason == PAYMENT_TIMEOUT_REASON else ORDERS_CONSUMER
        because = f" ({reason})" if reason else ""
        return [(lane, f"{detail.get('from')} → {detail.get('to')}{because}", "the order's final state")]
    return [(ORDERS, entry.event, "")]


def draw(timeline: OrderTimeline) -> Drawing:
    """``timeline`` as steps on lanes, in its order, each placed in time."""
    raw: list[tuple[Entry, str, str, str]] = []
    for entry in timeline.entries:
        for lane, label, detail in _steps_of(entry):
            raw.append((entry, lane, label, detail))
    if not raw:
        return Drawing((), timeline.order["status"], timeline.order.get("reason"))
    first, last = raw[0][0].at, raw[-1][0].at
    span = max((last - first).total_seconds(), 0.0)
    count = len(raw)
    steps = []
    for index, (entry, lane, label, detail) in enumerate(raw):
        rank = index / (count - 1) if count > 1 else 0.0
        share = (entry.at - first).total_seconds() / span if span > 0 else rank
        x = MARGIN + LANE_LABEL_WIDTH + WIDTH * (_BY_RANK * rank + (1 - _BY_RANK) * share)
        following = raw[index + 1][0].at if index + 1 < count else None
        to_next = (following - entry.at).total_seconds() * 1000 if following is not None else None
        event_id = entry.detail.get("event_id")
        steps.append(
            Step(
                number=index + 1,
                lane=lane,
                at=rfc3339(entry.at),
                label=label,
                detail=detail,
                event_id=str(event_id) if event_id else None,
                to_next_ms=to_next,
                x=round(x, 1),
                y=lane_y(lane),
            )
        )
    return Drawing(tuple(steps), timeline.order["status"], timeline.order.get("reason"))


def latency(ms: float | None) -> str:
    """A latency as people read it: ``0.4 ms``, ``38 ms``, ``2.1 s``, ``3 min 5 s``."""
    if ms is None:
        return ""
    if ms < 1:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"
