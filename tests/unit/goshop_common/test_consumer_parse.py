import uuid
from types import SimpleNamespace

import pytest

from goshop_common.messaging.consumer import PoisonEvent, parse


def record(value, headers=()):
    return SimpleNamespace(value=value, topic="t", partition=1, offset=7, headers=list(headers))


def test_a_well_formed_envelope_parses_with_its_headers():
    event_id = uuid.uuid4()
    event = parse(
        record(
            f'{{"event_id": "{event_id}", "event": "order.created", "order_id": "x"}}'.encode(),
            [("request-id", b"r-1")],
        )
    )
    assert (event.event_id, event.type, event.body["order_id"]) == (event_id, "order.created", "x")
    assert (event.topic, event.partition, event.offset, event.request_id) == ("t", 1, 7, "r-1")


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"\xff\xfe",
        b"[1]",
        b'"text"',
        b"null",
        b"{}",
        b'{"event_id": "nope", "event": "x"}',
        b'{"event_id": "00000000-0000-0000-0000-000000000001"}',
        b'{"event_id": "00000000-0000-0000-0000-000000000001", "event": 5}',
        b"[" * 5000,
        None,
    ],
)
def test_anything_else_is_poison(value):
    with pytest.raises(PoisonEvent):
        parse(record(value))


def test_undecodable_headers_are_dropped_not_fatal():
    event = parse(
        record(b'{"event_id": "00000000-0000-0000-0000-000000000001", "event": "x"}', [("request-id", b"\xff")])
    )
    assert event.request_id is None
