"""The rules explainer on orders the payment timeout cancelled: what became
of the money, in each case the compensation can leave."""

import pytest

from goshop_ops.timeline import Entry
from tests.unit.goshop_ops.test_rules_explainer import ORDER_ID, applied, at, changed, created, decided, explain, outbox

TIMED_OUT = [created(), outbox("order.created"), changed("cancelled", "payment_timeout", seconds=900)]
OPENING = (
    f"Order {ORDER_ID} was cancelled at 2026-11-25T06:43:27.249Z because no payment came in time (payment_timeout); "
    "it was created at 2026-11-25T06:28:27.249Z. "
)


def timed_out(*entries):
    return explain("cancelled", [*TIMED_OUT, *entries], reason="payment_timeout")


def refunded(seconds):
    return Entry(at(seconds), "payments", "payment refunded", {"status": "refunded", "reason": "payment_timeout"})


def test_a_late_payment_refunded_says_when_it_was_taken_and_given_back():
    text = timed_out(decided("confirmed", None, seconds=950), refunded(951))
    assert text == OPENING + (
        "Its payment was confirmed late at 2026-11-25T06:44:17.249Z and refunded at 2026-11-25T06:44:18.249Z: "
        "the customer was not charged."
    )


def test_an_order_never_charged_says_so():
    assert timed_out() == OPENING + "No payment was recorded for it."


def test_a_voided_charge_says_it_will_never_be_taken():
    voided = Entry(at(950), "payments", "payment voided", {"status": "voided", "reason": "payment_timeout"})
    assert (
        timed_out(voided)
        == OPENING + "Payments had not charged it yet: its charge was voided, so it will never be taken."
    )


def test_a_late_failed_payment_says_nothing_was_charged():
    text = timed_out(decided("failed", "insufficient_funds", seconds=950))
    assert (
        text
        == OPENING + "Its payment failed later (insufficient_funds) at 2026-11-25T06:44:17.249Z: nothing was charged."
    )


@pytest.mark.parametrize("cancellation_consumed", [False, True])
def test_a_late_confirmed_payment_not_refunded_yet_points_at_the_payments_consumer(cancellation_consumed):
    entries = [decided("confirmed", None, seconds=950)]
    if cancellation_consumed:
        entries.append(applied("payments", "order.cancelled", 951))
    text = timed_out(*entries)
    assert text.startswith(OPENING + "Its payment was confirmed at 2026-11-25T06:44:17.249Z and is not refunded yet")
    assert text.endswith("payments refunds it when it consumes the order.cancelled event.")
    assert ("see its log" in text) is cancellation_consumed
