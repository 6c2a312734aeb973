import pytest

from goshop_payments.provider import INSUFFICIENT_FUNDS, MockProvider


@pytest.mark.parametrize("amount", [19900, 5, 10, 100_000])
def test_amounts_divisible_by_five_fail_for_insufficient_funds(amount):
    decision = MockProvider(5).charge(amount, "RUB")
    assert (decision.confirmed, decision.reason) == (False, INSUFFICIENT_FUNDS)


@pytest.mark.parametrize("amount", [19901, 1, 4, 99_999])
def test_other_amounts_are_confirmed(amount):
    decision = MockProvider(5).charge(amount, "RUB")
    assert (decision.confirmed, decision.reason) == (True, None)


def test_divisor_zero_confirms_everything():
    assert MockProvider(0).charge(19900, "RUB").confirmed
