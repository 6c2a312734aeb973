"""A pagination cursor is opaque and checked: anything encode_cursor could
not have made is 400 "invalid cursor", before PostgreSQL sees it."""

from __future__ import annotations

import base64
import logging
import uuid

import pytest


def _old_style(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        # Used to reach PostgreSQL as a timestamp out of its range (a 500).
        _old_style(f"0001-01-01T00:00:00-23:59|{uuid.uuid4()}"),
        _old_style(f"2026-01-01T00:00:00+00:00|{uuid.uuid4()}"),
        "f" * 15 + "." + "0" * 32,  # past the year 4300
        "1g." + "0" * 32,  # not hex
        "1-" + "0" * 32,  # not the separator
        "1A." + "0" * 32,  # upper case is not what encode_cursor writes
        "1." + "0" * 31,
        "x" * 5000,
    ],
)
def test_a_cursor_encode_cursor_cannot_have_made_is_400(orders_client, customer, caplog, cursor):
    with caplog.at_level(logging.INFO):
        response = orders_client.get(
            "/v1/orders", params={"cursor": cursor}, headers=customer["headers"], expect_errors=True
        )
    assert response.status_int == 400
    assert response.json["error"] == "invalid cursor"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_any_well_formed_cursor_is_a_position(orders_client, customer):
    page = orders_client.get(
        "/v1/orders", params={"cursor": "0." + "0" * 32}, headers=customer["headers"], status=200
    ).json
    assert page == {"orders": [], "next_cursor": None}


def test_undecodable_cursor_or_order_id_is_400(orders_client, customer):
    for url in ("/v1/orders?cursor=%FF", "/v1/orders/%ED%A0%80"):
        response = orders_client.get(url, headers=customer["headers"], expect_errors=True)
        assert response.status_int == 400, url
        assert response.json == {"error": "invalid url encoding"}


def test_pages_follow_cursors_to_the_end(orders_client, customer):
    for amount in (100, 200, 300):
        orders_client.post_json("/v1/orders", {"amount_cents": amount}, headers=customer["headers"], status=201)
    seen, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = orders_client.get("/v1/orders", params=params, headers=customer["headers"], status=200).json
        seen += [o["amount_cents"] for o in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [300, 200, 100]


def test_a_lone_surrogate_currency_is_400(orders_client, customer):
    response = orders_client.post(
        "/v1/orders",
        b'{"amount_cents": 100, "currency": "\\ud800"}',
        content_type="application/json",
        headers=customer["headers"],
        expect_errors=True,
    )
    assert response.status_int == 400
    assert response.json["error"] == "currency must be an ISO 4217 code in capitals, such as RUB"
