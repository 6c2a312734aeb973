"""The timeline's JSON, its markdown and the order of entries, without a database."""

import datetime as dt

from goshop_ops.timeline import Entry, OrderTimeline, in_time_order, markdown

ORDER = {
    "id": "9a0e5b7c-1111-4222-8333-944445555666",
    "user_id": "u",
    "amount_cents": 19900,
    "currency": "RUB",
    "status": "cancelled",
    "reason": "insufficient_funds",
    "created_at": "2026-11-25T06:28:27.249Z",
    "updated_at": "2026-11-25T06:28:28.000Z",
}
T0 = dt.datetime(2026, 11, 25, 6, 28, 27, 249100, tzinfo=dt.UTC)


def test_entries_are_shown_in_utc_rfc3339_with_milliseconds():
    moscow = dt.timezone(dt.timedelta(hours=3))
    entry = Entry(T0.astimezone(moscow), "orders", "order created", {"amount_cents": 1})
    assert entry.as_json() == {
        "at": "2026-11-25T06:28:27.249Z",
        "source": "orders",
        "event": "order created",
        "detail": {"amount_cents": 1},
    }


def test_within_one_millisecond_the_saga_order_wins_over_the_clocks():
    # The outbox row's database time can be a few microseconds before the
    # order's service time, though they were written together.
    created = Entry(T0 + dt.timedelta(microseconds=500), "orders", "order created", {})
    pending = Entry(T0, "outboxer", "event pending", {"event_type": "order.created"})
    assert in_time_order([pending, created]) == (created, pending)


def test_a_later_millisecond_comes_later_whatever_the_kind():
    changed = Entry(T0, "orders", "status changed", {})
    created = Entry(T0 + dt.timedelta(milliseconds=1), "orders", "order created", {})
    assert in_time_order([created, changed]) == (changed, created)


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_an_entry_shows_its_trace_id_only_when_the_step_was_traced():
    assert "trace_id" not in Entry(T0, "orders", "order created", {}).as_json()
    assert Entry(T0, "outboxer", "event published", {}, TRACE_ID).as_json()["trace_id"] == TRACE_ID


def test_markdown_names_the_order_and_its_status_and_tabulates_the_entries():
    entries = (
        Entry(T0, "orders", "order created", {"amount_cents": 19900, "currency": "RUB"}),
        Entry(
            T0,
            "outboxer",
            "event pending",
            {"event_type": "order.created", "last_error": "a | b\nc", "x": None},
            TRACE_ID,
        ),
    )
    text = markdown(ORDER, entries)
    lines = text.splitlines()
    assert lines[0] == f"# Order {ORDER['id']}"
    assert "- status: **cancelled (insufficient_funds)**" in lines
    assert "| 2026-11-25T06:28:27.249Z | orders | order created | amount_cents=19900, currency=RUB |  |" in lines
    # Pipes escaped and line breaks flattened: one row per entry; empty details left out.
    assert (
        "| 2026-11-25T06:28:27.249Z | outboxer | event pending | event_type=order.created, last_error=a \\| b c "
        f"| {TRACE_ID} |" in (lines)
    )
    assert OrderTimeline(ORDER, entries).as_json()["markdown"] == text
