import threading

import sqlalchemy as sa
import webtest

from tests.support import count_rows


def post(client, customer, key, body, status="*"):
    headers = {**customer["headers"], "Idempotency-Key": key}
    return client.post_json("/v1/orders", body, headers=headers, status=status)


def test_same_key_and_body_replays_the_first_response(orders_client, customer, db_connection, clean_db):
    first = post(orders_client, customer, "k-1", {"amount_cents": 700}, status=201)
    again = post(orders_client, customer, "k-1", {"amount_cents": 700}, status=201)
    assert again.json == first.json
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count_rows(db_connection, "orders.orders") == 1
    assert count_rows(db_connection, "orders.outbox") == 1


def test_same_key_with_a_different_body_is_422(orders_client, customer, db_connection, clean_db):
    post(orders_client, customer, "k-2", {"amount_cents": 700}, status=201)
    response = post(orders_client, customer, "k-2", {"amount_cents": 701}, status=422)
    assert response.json == {"error": "Idempotency-Key was already used with a different request"}
    assert count_rows(db_connection, "orders.orders") == 1


def test_keys_belong_to_their_user(orders_client, testapp, customer):
    from tests.support import new_customer

    other = new_customer(testapp)
    mine = post(orders_client, customer, "shared", {"amount_cents": 700}, status=201).json
    theirs = post(orders_client, other, "shared", {"amount_cents": 700}, status=201).json
    assert mine["id"] != theirs["id"]


def test_a_key_still_in_flight_is_409(orders_client, orders_app, customer, engine):
    """Hold the key's lock in another transaction, as a concurrent request would."""
    user_id = customer["id"]
    with engine.connect() as connection, connection.begin():
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"{user_id}:busy"})
        response = post(orders_client, customer, "busy", {"amount_cents": 700}, status=409)
    assert response.json == {"error": "a request with this Idempotency-Key is in progress"}
    post(orders_client, customer, "busy", {"amount_cents": 700}, status=201)  # free again


def test_concurrent_requests_with_one_key_create_one_order(orders_app, customer, engine, clean_db):
    results = []
    barrier = threading.Barrier(8)

    def attempt():
        client = webtest.TestApp(orders_app)
        barrier.wait()
        response = post(client, customer, "race", {"amount_cents": 900})
        results.append((response.status_int, response.json.get("id")))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    statuses = sorted(status for status, _ in results)
    assert len(results) == 8
    assert set(statuses) <= {201, 409}
    created = {order_id for status, order_id in results if status == 201}
    assert len(created) == 1
    assert count_rows(engine, "orders.orders") == 1


def test_an_invalid_key_is_400(orders_client, customer, db_connection):
    for key in ("", "x" * 256, "has space", "é"):
        headers = {**customer["headers"], "Idempotency-Key": key.encode().decode("latin-1")}
        response = orders_client.post_json("/v1/orders", {"amount_cents": 1}, headers=headers, status=400)
        assert "Idempotency-Key" in response.json["error"]
    assert count_rows(db_connection, "orders.orders") == 0


def test_an_expired_key_can_be_used_again(orders_client, customer, db_connection):
    first = post(orders_client, customer, "old", {"amount_cents": 700}, status=201).json
    db_connection.execute(sa.text("UPDATE orders.idempotency_keys SET created_at = created_at - interval '2 days'"))
    second = post(orders_client, customer, "old", {"amount_cents": 800}, status=201).json
    assert second["id"] != first["id"]
