"""The rules explainer on hand-made timelines: one sentence for each place a
saga can end or stop."""

import datetime as dt

from goshop_ops.explain import RulesExplainer
from goshop_ops.timeline import Entry, OrderTimeline

ORDER_ID = "9a0e5b7c-1111-4222-8333-944445555666"
T0 = dt.datetime(2026, 11, 25, 6, 28, 27, 249000, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def order(status="new", reason=None):
    return {
        "id": ORDER_ID,
        "user_id": "c5837560-0000-4000-8000-000000000000",
        "amount_cents": 19900,
        "currency": "RUB",
        "status": status,
        "reason": reason,
        "created_at": "2026-11-25T06:28:27.249Z",
        "updated_at": "2026-11-25T06:28:28.000Z",
    }


def created():
    return Entry(at(0), "orders", "order created", {"amount_cents": 19900, "currency": "RUB"})


def outbox(event_type, published=True, seconds=0.1, attempts=0, last_error=None):
    detail = {"event_type": event_type, "event_id": "e", "topic": "t", "attempts": attempts, "queued_at": "q"}
    if published:
        return Entry(at(seconds), "outboxer", "event published", detail)
    detail |= {"last_error": last_error, "next_attempt_at": "2026-11-25T06:29:00.000Z"}
    return Entry(at(seconds), "outboxer", "event pending", detail)


def applied(source, event_type, seconds):
    return Entry(at(seconds), source, "event applied", {"event_type": event_type})


def decided(status="failed", reason="insufficient_funds", seconds=0.3):
    return Entry(at(seconds), "payments", "payment decided", {"status": status, "reason": reason})


def changed(to, reason=None, seconds=0.6):
    return Entry(at(seconds), "orders", "status changed", {"from": "new", "to": to, "reason": reason})


def explain(status, entries, reason=None):
    answer = RulesExplainer().explain(OrderTimeline(order(status, reason), tuple(entries)), "anything?")
    assert (answer.source, answer.model) == ("rules", None)
    return answer.text


def test_a_cancelled_order_is_explained_by_the_failed_payment_and_its_time():
    text = explain(
        "cancelled",
        [
            created(),
            outbox("order.created"),
            applied("payments", "order.created", 0.2),
            decided(),
            outbox("payment.failed", seconds=0.4),
            applied("orders", "payment.failed", 0.5),
            changed("cancelled", "insufficient_funds"),
        ],
        reason="insufficient_funds",
    )
    assert text == (
        f"Order {ORDER_ID} was cancelled: the payment failed (insufficient_funds) at 2026-11-25T06:28:27.549Z; "
        "it was created at 2026-11-25T06:28:27.249Z and cancelled at 2026-11-25T06:28:27.849Z."
    )


def test_a_paid_order_is_explained_by_the_confirmed_payment():
    text = explain(
        "paid",
        [created(), outbox("order.created"), decided("confirmed", None), changed("paid")],
    )
    assert text.startswith(f"Order {ORDER_ID} was paid: the payment was confirmed at 2026-11-25T06:28:27.549Z")
    assert "paid at 2026-11-25T06:28:27.849Z" in text


def test_a_new_order_with_a_failing_publication_names_the_attempts_and_the_error():
    error = "KafkaTimeoutError: Failed to update metadata after 60.0 secs."
    text = explain("new", [created(), outbox("order.created", published=False, attempts=3, last_error=error)])
    assert text.startswith(f"Order {ORDER_ID} is still new (it was created at 2026-11-25T06:28:27.249Z)")
    assert "order.created event is still pending publication" in text
    assert "3 publish attempts failed" in text
    assert error in text
    assert "retries at 2026-11-25T06:29:00.000Z" in text


def test_one_failed_attempt_is_singular():
    text = explain("new", [created(), outbox("order.created", published=False, attempts=1, last_error="E: x")])
    assert "1 publish attempt failed, last error: E: x" in text


def test_a_new_order_whose_event_was_never_tried_points_at_the_outboxer():
    text = explain("new", [created(), outbox("order.created", published=False)])
    assert "outboxer has not tried to publish it yet" in text


def test_a_new_order_without_an_event_says_the_payment_was_never_requested():
    assert "no order.created event" in explain("new", [created()])


def test_a_published_event_not_yet_consumed_points_at_the_payments_consumer():
    text = explain("new", [created(), outbox("order.created")])
    assert "was published at 2026-11-25T06:28:27.349Z" in text
    assert "payments has not consumed it yet" in text


def test_a_consumed_event_without_a_payment_says_it_was_skipped():
    text = explain("new", [created(), outbox("order.created"), applied("payments", "order.created", 0.2)])
    assert "recorded no payment" in text


def test_a_decided_payment_whose_event_is_pending_says_so():
    text = explain(
        "new",
        [
            created(),
            outbox("order.created"),
            decided(),
            outbox("payment.failed", published=False, seconds=0.3, attempts=2, last_error="KafkaError: x"),
        ],
    )
    assert "the payment failed (insufficient_funds) at 2026-11-25T06:28:27.549Z" in text
    assert "payment.failed event is still pending publication" in text
    assert "2 publish attempts failed, last error: KafkaError: x" in text


def test_a_published_payment_event_not_yet_applied_points_at_the_orders_consumer():
    text = explain(
        "new",
        [created(), outbox("order.created"), decided("confirmed", None), outbox("payment.confirmed", seconds=0.4)],
    )
    assert "the payment was confirmed at" in text
    assert "payment.confirmed event was published at 2026-11-25T06:28:27.649Z" in text
    assert "orders has not consumed it yet" in text


def test_an_applied_payment_event_that_did_not_move_the_order_says_so():
    text = explain(
        "new",
        [
            created(),
            outbox("order.created"),
            decided("confirmed", None),
            outbox("payment.confirmed", seconds=0.4),
            applied("orders", "payment.confirmed", 0.5),
        ],
    )
    assert "yet the order did not move" in text


def test_the_answer_does_not_depend_on_the_question():
    timeline = OrderTimeline(order("cancelled", "insufficient_funds"), (created(), decided(), changed("cancelled")))
    explainer = RulesExplainer()
    assert explainer.explain(timeline, "why?").text == explainer.explain(timeline, None).text
