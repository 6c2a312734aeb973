"""The event contract: what producers may write and what consumers accept."""

import datetime as dt
import json
import uuid
from types import SimpleNamespace

import pytest

from goshop_common.messaging.consumer import PoisonEvent, parse
from goshop_domain import events

AT = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
ORDER_ID = uuid.UUID("0b9d6c43-2f6d-4d8e-9a59-1d6a3c1f0e11")
USER_ID = uuid.UUID("7f3e2a10-5c4b-4e7d-8f90-2b1c0d9e8a77")


def order_created(**changes) -> dict:
    fields = dict(order_id=ORDER_ID, user_id=USER_ID, amount_cents=1250, currency="RUB", status="new")
    return events.ORDER_CREATED.build(AT, **{**fields, **changes})


def record(body, topic=events.ORDERS_TOPIC, headers=()):
    value = body if isinstance(body, bytes | None) else json.dumps(body).encode()
    return SimpleNamespace(value=value, topic=topic, partition=1, offset=7, headers=list(headers))


def test_a_built_event_carries_the_envelope_and_its_fields_as_the_wire_spells_them():
    body = order_created()
    assert body == {
        "event_id": body["event_id"],
        "event": "order.created",
        "version": events.VERSION,
        "occurred_at": "2026-12-01T12:00:00Z",
        "order_id": str(ORDER_ID),
        "user_id": str(USER_ID),
        "amount_cents": 1250,
        "currency": "RUB",
        "status": "new",
    }
    assert uuid.UUID(body["event_id"])
    assert events.ORDER_CREATED.key(body) == str(ORDER_ID)


def test_what_a_producer_builds_a_consumer_reads_back_as_python_values():
    event = parse(record(order_created(), headers=[("request-id", b"r-1")]))
    assert (event.type, event.topic, event.partition, event.offset, event.request_id) == (
        "order.created",
        events.ORDERS_TOPIC,
        1,
        7,
        "r-1",
    )
    assert event.fields == {
        "order_id": ORDER_ID,
        "user_id": USER_ID,
        "amount_cents": 1250,
        "currency": "RUB",
        "status": "new",
    }


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [(events.PAYMENT_CONFIRMED, None), (events.PAYMENT_FAILED, "insufficient_funds")],
)
def test_payment_events_round_trip_with_their_reason(event_type, reason):
    payment_id = uuid.uuid4()
    body = event_type.build(
        AT,
        payment_id=payment_id,
        order_id=ORDER_ID,
        user_id=USER_ID,
        amount_cents=99,
        currency="EUR",
        status=event_type.name.split(".")[1],
        reason=reason,
    )
    event = parse(record(body, topic=events.PAYMENTS_TOPIC))
    assert (event.fields["payment_id"], event.fields["order_id"], event.fields["reason"]) == (
        payment_id,
        ORDER_ID,
        reason,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"amount_cents": 0},
        {"amount_cents": True},
        {"amount_cents": "1250"},
        {"currency": "rub"},
        {"status": "paid"},
        {"order_id": "not-a-uuid"},
        {"coupon": "FREE"},
    ],
)
def test_a_producer_cannot_build_an_event_the_contract_refuses(changes):
    with pytest.raises(events.InvalidEvent):
        order_created(**changes)


def test_a_failed_payment_must_say_why():
    with pytest.raises(events.InvalidEvent, match="reason"):
        events.PAYMENT_FAILED.build(
            AT,
            payment_id=uuid.uuid4(),
            order_id=ORDER_ID,
            user_id=USER_ID,
            amount_cents=5,
            currency="RUB",
            status="failed",
            reason=None,
        )


def _without(body: dict, name: str) -> dict:
    return {key: value for key, value in body.items() if key != name}


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"\xff\xfe",
        b"[1]",
        b'"text"',
        b"null",
        b"{}",
        b'{"event_id": "nope", "event": "x", "version": 1, "occurred_at": "2026-01-01T00:00:00Z"}',
        b'{"event_id": "00000000-0000-0000-0000-000000000001"}',
        b'{"event_id": "00000000-0000-0000-0000-000000000001", "event": 5}',
        b"[" * 5000,
        None,
    ],
)
def test_a_record_without_an_envelope_is_poison(value):
    with pytest.raises(PoisonEvent):
        parse(record(value))


@pytest.mark.parametrize(
    ("body", "topic"),
    [
        ({**order_created(), "version": 2}, events.ORDERS_TOPIC),
        (_without(order_created(), "version"), events.ORDERS_TOPIC),
        ({**order_created(), "occurred_at": "yesterday"}, events.ORDERS_TOPIC),
        ({**order_created(), "occurred_at": "2026-12-01T12:00:00"}, events.ORDERS_TOPIC),
        (_without(order_created(), "user_id"), events.ORDERS_TOPIC),
        ({**order_created(), "amount_cents": "lots"}, events.ORDERS_TOPIC),
        ({**order_created(), "amount_cents": -5}, events.ORDERS_TOPIC),
        (order_created(), events.PAYMENTS_TOPIC),
    ],
    ids=[
        "unknown-version",
        "no-version",
        "bad-time",
        "time-without-zone",
        "missing-field",
        "amount-as-text",
        "negative-amount",
        "wrong-topic",
    ],
)
def test_a_known_event_that_breaks_its_schema_is_poison(body, topic):
    with pytest.raises(PoisonEvent):
        parse(record(body, topic=topic))


def test_a_field_added_by_a_newer_producer_is_ignored_not_refused():
    event = parse(record({**order_created(), "coupon": "FREE"}))
    assert "coupon" not in event.fields
    assert event.body["coupon"] == "FREE"


def test_an_event_type_the_contract_does_not_know_is_poison_to_park_until_consumers_learn_it():
    body = {**_without(order_created(), "order_id"), "event": "order.gift_wrapped"}
    with pytest.raises(PoisonEvent) as poison:
        parse(record(body))
    assert (poison.value.reason, str(poison.value)) == ("unknown_type", "unknown event type 'order.gift_wrapped'")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "malformed"),
        (b'{"event": "order.created"}', "malformed"),
        (json.dumps({**order_created(), "amount_cents": "lots"}).encode(), "contract"),
    ],
    ids=["not-json", "no-envelope", "breaks-schema"],
)
def test_poison_says_its_reason_class_for_the_parked_counter(value, reason):
    with pytest.raises(PoisonEvent) as poison:
        parse(record(value))
    assert poison.value.reason == reason


def test_undecodable_headers_are_dropped_not_fatal():
    event = parse(record(order_created(), headers=[("request-id", b"\xff")]))
    assert event.request_id is None


def test_headers_name_the_event_and_leave_out_an_unknown_request_id():
    event_id = uuid.uuid4()
    assert events.event_headers("payment.failed", event_id, None) == [
        ("event-type", b"payment.failed"),
        ("event-id", str(event_id).encode()),
    ]
