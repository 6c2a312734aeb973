import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from tests.support import EXPIRED, INVALID, NO_TOKEN, bearer, count_rows, expired_copy, new_customer, table_snapshot


def create(client, customer, status=201, **body):
    body.setdefault("amount_cents", 19901)
    return client.post_json("/v1/orders", body, headers=customer["headers"], status=status)


def test_create_order_returns_201_location_and_a_new_order(orders_client, customer):
    response = create(orders_client, customer, amount_cents=19901, currency="RUB")
    order = response.json
    assert response.headers["Location"].endswith(f"/v1/orders/{order['id']}")
    assert order["status"] == "new"
    assert order["amount_cents"] == 19901
    assert order["currency"] == "RUB"
    assert order["user_id"] == customer["id"]
    assert order["reason"] is None


def test_currency_defaults_to_rub(orders_client, customer):
    assert create(orders_client, customer).json["currency"] == "RUB"
    assert create(orders_client, customer, currency=None).json["currency"] == "RUB"


def test_order_and_its_order_created_event_are_written_together(orders_client, customer, db_connection):
    order = create(orders_client, customer, amount_cents=500).json
    row = db_connection.execute(sa.text("SELECT topic, key, event_type, payload FROM orders.outbox")).one()
    assert (row.topic, row.key, row.event_type) == ("orders.events", order["id"], "order.created")
    payload = row.payload
    assert payload["event"] == "order.created"
    assert payload["version"] == 1
    uuid.UUID(payload["event_id"])
    dt.datetime.fromisoformat(payload["occurred_at"].replace("Z", "+00:00"))
    assert payload["order_id"] == order["id"]
    assert payload["user_id"] == customer["id"]
    assert (payload["amount_cents"], payload["currency"], payload["status"]) == (500, "RUB", "new")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"amount_cents": 0}, "amount_cents must be a positive integer"),
        ({"amount_cents": -5}, "amount_cents must be a positive integer"),
        ({"amount_cents": 10.5}, "amount_cents must be a positive integer"),
        ({"amount_cents": "100"}, "amount_cents must be a positive integer"),
        ({"amount_cents": True}, "amount_cents must be a positive integer"),
        ({"amount_cents": None}, "amount_cents is required"),
        ({}, "amount_cents is required"),
        ({"amount_cents": 10**12}, "amount_cents must not exceed 100000000"),
        ({"amount_cents": 100, "currency": "RU"}, "currency must be an ISO 4217 code in capitals, such as RUB"),
        ({"amount_cents": 100, "currency": "RUBL"}, "currency must be an ISO 4217 code in capitals, such as RUB"),
        ({"amount_cents": 100, "currency": "R1B"}, "currency must be an ISO 4217 code in capitals, such as RUB"),
        ({"amount_cents": 100, "currency": 643}, "currency must be an ISO 4217 code in capitals, such as RUB"),
        # Three letters but no currency: not in ISO 4217, or not money.
        ({"amount_cents": 100, "currency": "ABC"}, "currency must be an ISO 4217 code in capitals, such as RUB"),
        ({"amount_cents": 100, "currency": "XAU"}, "currency must be an ISO 4217 code in capitals, such as RUB"),
        ({"amount_cents": 100, "currency": "XXX"}, "currency must be an ISO 4217 code in capitals, such as RUB"),
        ({"amount_cents": 100, "currency": "usd"}, "currency must be an ISO 4217 code in capitals, such as RUB"),
    ],
)
def test_invalid_orders_are_400_and_write_nothing(orders_client, customer, db_connection, body, message):
    before = table_snapshot(db_connection)
    response = orders_client.post_json("/v1/orders", body, headers=customer["headers"], status=400)
    assert response.json["error"] == message
    assert table_snapshot(db_connection) == before


@pytest.mark.parametrize("currency", ["USD", "JPY", "XCG"])
def test_any_iso_4217_currency_is_taken(orders_client, customer, currency):
    order = orders_client.post_json(
        "/v1/orders", {"amount_cents": 100, "currency": currency}, headers=customer["headers"], status=201
    ).json
    assert order["currency"] == currency


@pytest.mark.parametrize("body", [b"{oops", b"[]", b'"x"', b"null", b"[" * 3000])
def test_malformed_bodies_are_400(orders_client, customer, db_connection, body):
    before = table_snapshot(db_connection)
    orders_client.post("/v1/orders", body, headers=customer["headers"], content_type="application/json", status=400)
    assert table_snapshot(db_connection) == before


def test_creating_an_order_needs_an_access_token(orders_client, customer):
    assert orders_client.post_json("/v1/orders", {"amount_cents": 1}, status=401).json == {"error": "unauthorized"}
    refresh = {"Authorization": f"Bearer {customer['tokens']['refresh_token']}"}
    response = orders_client.post_json("/v1/orders", {"amount_cents": 1}, headers=refresh, status=401)
    assert response.json == {"error": "invalid token"}


def test_orders_challenge_tells_an_expired_access_token_from_an_invalid_one(orders_client, users_app, customer):
    access = customer["tokens"]["access_token"]
    head, payload, signature = access.split(".")
    cases = {
        "none": ({}, {"error": "unauthorized"}, NO_TOKEN),
        "expired": (bearer(expired_copy(access, users_app.registry.signing_key)), {"error": "invalid token"}, EXPIRED),
        "forged": (bearer(f"{head}.{payload}.{signature[::-1]}"), {"error": "invalid token"}, INVALID),
        "refresh": (bearer(customer["tokens"]["refresh_token"]), {"error": "invalid token"}, INVALID),
    }
    for name, (headers, body, challenge) in cases.items():
        for response in (
            orders_client.get("/v1/orders", headers=headers, status=401),
            orders_client.post_json("/v1/orders", {"amount_cents": 1}, headers=headers, status=401),
        ):
            assert (response.json, response.headers["WWW-Authenticate"]) == (body, challenge), name


def test_an_order_is_visible_to_its_owner_only(orders_client, testapp, customer):
    order = create(orders_client, customer).json
    assert orders_client.get(f"/v1/orders/{order['id']}", headers=customer["headers"]).json == order
    stranger = new_customer(testapp)
    for path in (f"/v1/orders/{order['id']}", f"/v1/orders/{order['id']}/status"):
        assert orders_client.get(path, headers=stranger["headers"], status=404).json == {"error": "order not found"}


@pytest.mark.parametrize("order_id", [str(uuid.uuid4()), "not-a-uuid", "1", "%00"])
def test_unknown_or_malformed_order_ids_are_404(orders_client, customer, order_id):
    orders_client.get(f"/v1/orders/{order_id}", headers=customer["headers"], status=404)
    orders_client.get(f"/v1/orders/{order_id}/status", headers=customer["headers"], status=404)


def test_status_reports_status_and_reason(orders_client, customer):
    order = create(orders_client, customer).json
    status = orders_client.get(f"/v1/orders/{order['id']}/status", headers=customer["headers"]).json
    assert status == {"id": order["id"], "status": "new", "reason": None}


def test_my_orders_are_listed_newest_first_with_a_cursor(orders_client, testapp, customer):
    created = [create(orders_client, customer, amount_cents=100 + n).json["id"] for n in range(5)]
    other = new_customer(testapp)
    create(orders_client, other)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = orders_client.get("/v1/orders", params=params, headers=customer["headers"]).json
        assert len(page["orders"]) <= 2
        seen += [o["id"] for o in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))


def test_list_defaults_to_twenty(orders_client, customer):
    for n in range(21):
        create(orders_client, customer, amount_cents=1 + n)
    page = orders_client.get("/v1/orders", headers=customer["headers"]).json
    assert len(page["orders"]) == 20
    assert page["next_cursor"]


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"cursor": "%%%"}, {"cursor": "bm9wZQ"}]
)
def test_bad_list_parameters_are_400(orders_client, customer, params):
    response = orders_client.get("/v1/orders", params=params, headers=customer["headers"], status=400)
    assert response.json["error"]


def test_listing_needs_a_token(orders_client):
    orders_client.get("/v1/orders", status=401)


def test_orders_service_health_and_openapi(orders_client):
    orders_client.get("/live", status=200)
    orders_client.get("/ready", status=200)
    paths = orders_client.get("/openapi.json").json["paths"]
    assert {"/v1/orders", "/v1/orders/{id}", "/v1/orders/{id}/status"} <= set(paths)


def test_counting_helper_sees_orders(orders_client, customer, db_connection):
    create(orders_client, customer)
    assert count_rows(db_connection, "orders.orders") == 1
