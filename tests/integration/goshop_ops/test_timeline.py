"""An order's timeline and its explanation by rules, on orders the real saga
paid or cancelled (outboxer, broker and both consumers running)."""

import uuid

import pytest
import sqlalchemy as sa

from tests.integration.goshop_ops.conftest import OPERATOR, create_order
from tests.saga_runtime import SagaRuntime, saga_settings, wait_until

SAGA_KINDS = [
    ("orders", "order created"),
    ("outboxer", "event published"),
    ("payments", "event applied"),
    ("payments", "payment decided"),
    ("outboxer", "event published"),
    ("orders", "event applied"),
    ("orders", "status changed"),
]


# The saga's workers read and write on connections of their own: this module's
# clients commit, and every table is emptied around each test.
pytestmark = pytest.mark.commits


@pytest.fixture(scope="module")
def saga(service_settings, kafka_broker):
    runtime = SagaRuntime(saga_settings(service_settings, kafka_broker.bootstrap)).start()
    yield runtime
    runtime.stop()


def settled_order(saga, orders_client, customer, amount_cents):
    """An order the saga has finished with: settled, and every event consumed."""
    order = create_order(orders_client, customer, amount_cents)
    saga.wait_settled([order["id"]])
    # The orders consumer records its inbox row with the status change, so a
    # settled order's story is complete once the payment event is published.
    wait_until(lambda: _published(saga, order["id"]), message="payment event published")
    return order


def _published(saga, order_id):
    with saga.engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT count(*) FROM payments.outbox WHERE key = :k AND published_at IS NOT NULL"), {"k": order_id}
        ).scalar_one()


def timeline(ops_client, order_id, **kwargs):
    return ops_client.get(f"/v1/ops/orders/{order_id}/timeline", headers=OPERATOR, **kwargs)


def test_a_paid_orders_timeline_shows_every_saga_step_in_time_order(saga, ops_client, orders_client, customer):
    order = settled_order(saga, orders_client, customer, 19901)
    body = timeline(ops_client, order["id"]).json
    assert body["order"]["id"] == order["id"]
    assert body["order"]["status"] == "paid"
    entries = body["entries"]
    assert [(e["source"], e["event"]) for e in entries] == SAGA_KINDS
    times = [e["at"] for e in entries]
    assert times == sorted(times)
    assert all(t.endswith("Z") for t in times)
    published = [e["detail"]["event_type"] for e in entries if e["event"] == "event published"]
    assert published == ["order.created", "payment.confirmed"]
    decided = next(e for e in entries if e["event"] == "payment decided")
    assert decided["detail"]["status"] == "confirmed"
    assert entries[-1]["detail"] == {"from": "new", "to": "paid", "reason": None}
    assert "**paid**" in body["markdown"]
    assert order["id"] in body["markdown"]


def test_a_cancelled_orders_timeline_carries_the_payment_failure(saga, ops_client, orders_client, customer):
    order = settled_order(saga, orders_client, customer, 19900)
    body = timeline(ops_client, order["id"]).json
    entries = body["entries"]
    assert [(e["source"], e["event"]) for e in entries] == SAGA_KINDS
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    decided = next(e for e in entries if e["event"] == "payment decided")
    assert (decided["detail"]["status"], decided["detail"]["reason"]) == ("failed", "insufficient_funds")
    published = [e["detail"]["event_type"] for e in entries if e["event"] == "event published"]
    assert published == ["order.created", "payment.failed"]
    assert "**cancelled (insufficient_funds)**" in body["markdown"]


def test_the_timeline_as_markdown_is_a_table_of_the_same_entries(saga, ops_client, orders_client, customer):
    order = settled_order(saga, orders_client, customer, 19900)
    as_json = timeline(ops_client, order["id"]).json
    response = ops_client.get(f"/v1/ops/orders/{order['id']}/timeline.md", headers=OPERATOR)
    assert response.content_type == "text/markdown"
    assert response.text == as_json["markdown"]
    rows = [line for line in response.text.splitlines() if line.startswith("| 20")]
    assert len(rows) == len(as_json["entries"])
    assert [row.split(" | ")[2] for row in rows] == [e["event"] for e in as_json["entries"]]
    assert "cancelled" in response.text


def test_rules_explain_a_cancelled_order_by_its_failed_payment(saga, ops_client, orders_client, customer):
    order = settled_order(saga, orders_client, customer, 19900)
    body = ops_client.post_json(f"/v1/ops/orders/{order['id']}/explain", {}, headers=OPERATOR).json
    assert body["source"] == "rules"
    assert "model" not in body
    answer = body["answer"]
    decided = next(e for e in body["timeline"]["entries"] if e["event"] == "payment decided")
    assert f"Order {order['id']} was cancelled" in answer
    assert "insufficient_funds" in answer
    assert decided["at"] in answer
    assert body["timeline"]["order"]["status"] == "cancelled"


def test_rules_explain_a_paid_order_by_its_confirmed_payment(saga, ops_client, orders_client, customer):
    order = settled_order(saga, orders_client, customer, 19901)
    body = ops_client.post_json(
        f"/v1/ops/orders/{order['id']}/explain", {"question": "Why was it paid?"}, headers=OPERATOR
    ).json
    assert body["source"] == "rules"
    assert f"Order {order['id']} was paid" in body["answer"]
    assert "confirmed" in body["answer"]


def test_an_explanation_needs_no_body(saga, ops_client, orders_client, customer):
    order = settled_order(saga, orders_client, customer, 19901)
    response = ops_client.post(f"/v1/ops/orders/{order['id']}/explain", headers=OPERATOR)
    assert response.json["source"] == "rules"
    assert "was paid" in response.json["answer"]


def test_an_unknown_order_has_no_timeline(ops_client):
    response = timeline(ops_client, uuid.uuid4(), status=404)
    assert response.json == {"error": "order not found"}


def test_each_step_shows_the_trace_it_was_written_in_and_an_untraced_step_none(
    saga, ops_client, orders_client, customer
):
    order = settled_order(saga, orders_client, customer, 19901)
    # This saga runs untraced (no OTLP endpoint): no step names a trace.
    assert not [entry for entry in timeline(ops_client, order["id"]).json["entries"] if "trace_id" in entry]

    # Rows as a traced shop writes them: the order.created row with its
    # creation's traceparent, payments' inbox row with the span that applied it.
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with saga.engine.begin() as connection:
        event_id = connection.execute(
            sa.text("UPDATE orders.outbox SET traceparent = :tp WHERE key = :k RETURNING event_id"),
            {"tp": f"00-{trace_id}-00f067aa0ba902b7-01", "k": order["id"]},
        ).scalar_one()
        connection.execute(
            sa.text("UPDATE payments.inbox SET traceparent = :tp WHERE event_id = :e"),
            {"tp": f"00-{trace_id}-b7ad6b7169203331-01", "e": event_id},
        )
    body = timeline(ops_client, order["id"]).json
    traced = {(entry["source"], entry["event"]) for entry in body["entries"] if entry.get("trace_id") == trace_id}
    assert traced == {("outboxer", "event published"), ("payments", "event applied")}
    assert f"| {trace_id} |" in body["markdown"]
