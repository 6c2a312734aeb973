"""The order page's drawing: each step of the saga on its service's lane, in
the timeline's order, placed in time, with the time to the next step."""

import datetime as dt
import uuid

from goshop_ops.console.drawing import (
    BROKER,
    GATEWAY,
    LANES,
    ORDERS,
    ORDERS_CONSUMER,
    OUTBOXER,
    PAYMENTS,
    draw,
    lane_y,
    latency,
)
from goshop_ops.timeline import (
    EVENT_APPLIED,
    EVENT_PENDING,
    EVENT_PUBLISHED,
    ORDER_CREATED,
    PAYMENT_DECIDED,
    STATUS_CHANGED,
    Entry,
    OrderTimeline,
)

T0 = dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC)
CREATED_ID, CONFIRMED_ID = str(uuid.uuid4()), str(uuid.uuid4())


def at(ms: float) -> dt.datetime:
    return T0 + dt.timedelta(milliseconds=ms)


def paid_order() -> OrderTimeline:
    order = {"id": str(uuid.uuid4()), "status": "paid", "reason": None}
    created = {"event_type": "order.created", "event_id": CREATED_ID, "topic": "orders.events", "attempts": 0}
    confirmed = {"event_type": "payment.confirmed", "event_id": CONFIRMED_ID, "topic": "payments.events"}
    entries = (
        Entry(at(0), "orders", ORDER_CREATED, {"amount_cents": 100, "currency": "RUB", "user_id": "u"}),
        Entry(at(12), "outboxer", EVENT_PUBLISHED, created),
        Entry(at(20), "payments", EVENT_APPLIED, {**created, "partition": 0, "offset": 4}),
        Entry(at(20.5), "payments", PAYMENT_DECIDED, {"payment_id": "p", "status": "confirmed", "reason": None}),
        Entry(at(31), "outboxer", EVENT_PUBLISHED, confirmed),
        Entry(at(40), "orders", EVENT_APPLIED, {**confirmed, "partition": 1, "offset": 9}),
        Entry(at(40), "orders", STATUS_CHANGED, {"from": "new", "to": "paid", "reason": None}),
    )
    return OrderTimeline(order, entries)


def test_a_paid_checkout_is_drawn_across_every_lane_in_the_sagas_order():
    drawing = draw(paid_order())
    assert [s.lane for s in drawing.steps] == [
        GATEWAY,
        ORDERS,
        OUTBOXER,
        BROKER,
        PAYMENTS,
        PAYMENTS,
        OUTBOXER,
        BROKER,
        ORDERS_CONSUMER,
        ORDERS_CONSUMER,
    ]
    assert {s.lane for s in drawing.steps} == set(LANES)
    assert drawing.steps[-1].label == "new → paid"
    assert (drawing.status, drawing.reason) == ("paid", None)
    assert all(s.y == lane_y(s.lane) for s in drawing.steps)


def test_steps_are_placed_left_to_right_in_time_and_carry_the_time_to_the_next():
    steps = draw(paid_order()).steps
    assert [s.x for s in steps] == sorted(s.x for s in steps)
    assert len({s.x for s in steps}) == len(steps), "two steps at the same instant are still told apart"
    assert steps[1].to_next_ms == 12  # order created -> order.created published
    assert steps[4].to_next_ms == 0.5  # order.created applied -> payment decided
    assert steps[-1].to_next_ms is None


def test_a_step_about_an_event_names_the_event_id():
    steps = draw(paid_order()).steps
    assert {s.event_id for s in steps if s.lane in (OUTBOXER, BROKER)} == {CREATED_ID, CONFIRMED_ID}
    assert steps[0].event_id is None


def test_a_declined_payment_and_its_reason_are_drawn():
    timeline = paid_order()
    declined = {"payment_id": "p", "status": "failed", "reason": "insufficient_funds"}
    entries = tuple(
        Entry(e.at, e.source, e.event, declined) if e.event == PAYMENT_DECIDED else e for e in timeline.entries
    )
    entries = (
        *entries[:-1],
        Entry(at(40), "orders", STATUS_CHANGED, {"from": "new", "to": "cancelled", "reason": "insufficient_funds"}),
    )
    drawing = draw(OrderTimeline({**timeline.order, "status": "cancelled", "reason": "insufficient_funds"}, entries))
    labels = [s.label for s in drawing.steps]
    assert "payment failed (insufficient_funds)" in labels
    assert labels[-1] == "new → cancelled (insufficient_funds)"
    assert drawing.reason == "insufficient_funds"


def test_an_event_the_outboxer_could_not_publish_is_drawn_with_its_error():
    pending = {"event_type": "order.created", "event_id": CREATED_ID, "attempts": 3, "last_error": "KafkaTimeoutError"}
    order = {"id": "o", "status": "new", "reason": None}
    entries = (
        Entry(at(0), "orders", ORDER_CREATED, {"amount_cents": 1, "currency": "RUB"}),
        Entry(at(1), "outboxer", EVENT_PENDING, pending),
    )
    [_, _, stuck] = draw(OrderTimeline(order, entries)).steps
    assert (stuck.lane, stuck.label) == (OUTBOXER, "order.created not published")
    assert "KafkaTimeoutError" in stuck.detail


def test_latencies_read_as_people_read_them():
    assert [latency(v) for v in (None, 0.25, 38.4, 2100, 185_000)] == ["", "0.2 ms", "38 ms", "2.1 s", "3 min 5 s"]
