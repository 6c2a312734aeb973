"""Rules explain an order the saga has not finished with: no workers run here,
so an order stays ``new`` with its event in the outbox, as when the broker or
the outboxer is away."""

import pytest
import sqlalchemy as sa

from tests.integration.goshop_ops.conftest import OPERATOR, create_order, fail_publication

KAFKA_ERROR = "KafkaTimeoutError: Failed to update metadata after 60.0 secs."


def explain(ops_client, order_id):
    return ops_client.post_json(f"/v1/ops/orders/{order_id}/explain", {}, headers=OPERATOR).json


def test_a_new_order_whose_event_keeps_failing_to_publish_is_explained_by_the_error(
    ops_client, orders_client, customer, db_connection
):
    order = create_order(orders_client, customer, 19901)
    fail_publication(db_connection, order["id"], KAFKA_ERROR, attempts=3)
    body = explain(ops_client, order["id"])
    answer = body["answer"]
    assert body["source"] == "rules"
    assert f"Order {order['id']} is still new" in answer
    assert "order.created event is still pending publication" in answer
    assert "3 publish attempts failed" in answer
    assert KAFKA_ERROR in answer
    [pending] = [e for e in body["timeline"]["entries"] if e["event"] == "event pending"]
    assert pending["source"] == "outboxer"
    assert (pending["detail"]["attempts"], pending["detail"]["last_error"]) == (3, KAFKA_ERROR)


@pytest.mark.commits
def test_a_new_order_whose_event_was_never_tried_points_at_the_outboxer(ops_client, orders_client, customer):
    # Committed, one transaction per request as in production: the entries'
    # order compares the service's clock (the order) with the database's now()
    # (the outbox row), and in a test's one rolled-back transaction now() is
    # when the test began.
    order = create_order(orders_client, customer, 19901)
    body = explain(ops_client, order["id"])
    assert "pending publication" in body["answer"]
    assert "outboxer has not tried" in body["answer"]
    assert [(e["source"], e["event"]) for e in body["timeline"]["entries"]] == [
        ("orders", "order created"),
        ("outboxer", "event pending"),
    ]


def test_a_published_event_without_a_payment_points_at_the_payments_consumer(
    ops_client, orders_client, customer, db_connection
):
    order = create_order(orders_client, customer, 19901)
    db_connection.execute(sa.text("UPDATE orders.outbox SET published_at = now() WHERE key = :k"), {"k": order["id"]})
    body = explain(ops_client, order["id"])
    assert "was published at" in body["answer"]
    assert "payments has not consumed it yet" in body["answer"]


def test_a_new_orders_markdown_timeline_shows_the_pending_event_and_its_error(
    ops_client, orders_client, customer, db_connection
):
    order = create_order(orders_client, customer, 19901)
    fail_publication(db_connection, order["id"], "KafkaTimeoutError: a | b")
    text = ops_client.get(f"/v1/ops/orders/{order['id']}/timeline.md", headers=OPERATOR).text
    assert "**new**" in text
    assert "| outboxer | event pending |" in text
    # A pipe in the error would otherwise split the table's cell.
    assert "KafkaTimeoutError: a \\| b" in text
