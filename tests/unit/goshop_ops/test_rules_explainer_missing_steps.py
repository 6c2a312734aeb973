"""The rules explainer on timelines with a step missing that the order's
state implies: it tells what is missing rather than inventing it."""

from tests.unit.goshop_ops.test_rules_explainer import (
    ORDER_ID,
    changed,
    created,
    decided,
    explain,
    outbox,
)


def test_a_cancelled_order_without_a_recorded_payment_says_none_was_recorded():
    text = explain("cancelled", [created(), outbox("order.created"), changed("cancelled", "expired")], reason="expired")
    assert text == (
        f"Order {ORDER_ID} was cancelled (expired) at 2026-11-25T06:28:27.849Z, but no payment was recorded "
        "for it; it was created at 2026-11-25T06:28:27.249Z."
    )


def test_a_cancelled_order_without_a_reason_or_a_status_change_says_no_reason_was_given():
    text = explain("cancelled", [created()])
    assert text.startswith(f"Order {ORDER_ID} was cancelled (no reason given), but no payment was recorded")


def test_a_paid_order_without_a_recorded_payment_says_none_was_recorded():
    text = explain("paid", [created(), outbox("order.created"), changed("paid")])
    assert text == (
        f"Order {ORDER_ID} was paid at 2026-11-25T06:28:27.849Z, but no payment was recorded for it; "
        "it was created at 2026-11-25T06:28:27.249Z."
    )


def test_a_decided_payment_without_an_event_in_the_payments_outbox_says_so():
    text = explain("new", [created(), outbox("order.created"), decided("confirmed", None)])
    assert text.endswith(
        "the payment was confirmed at 2026-11-25T06:28:27.549Z, but no payment event for it is in the payments outbox."
    )


def test_a_payment_event_the_outboxer_has_not_tried_yet_says_so():
    text = explain(
        "new",
        [created(), outbox("order.created"), decided(), outbox("payment.failed", published=False, seconds=0.4)],
    )
    assert text.endswith(
        "its payment.failed event is still pending publication to Kafka and the outboxer has not tried to publish "
        "it yet."
    )


def test_an_order_in_a_status_the_rules_do_not_know_is_told_as_it_is():
    text = explain("refunded", [created()])
    assert text == f"Order {ORDER_ID} is refunded; it was created at 2026-11-25T06:28:27.249Z."
