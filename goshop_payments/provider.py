"""The mock payment provider: deterministic, so the saga can be tested end to end.

Amounts divisible by ``fail_divisor`` fail with ``insufficient_funds``; the
rest are confirmed. ``fail_divisor=0`` confirms everything. A refund of a
confirmed charge always succeeds.
"""

from __future__ import annotations

import dataclasses

INSUFFICIENT_FUNDS = "insufficient_funds"


@dataclasses.dataclass(frozen=True)
class Decision:
    """The provider's answer: confirmed, or not with a ``reason``."""

    confirmed: bool
    reason: str | None = None


class MockProvider:
    """Decides from the amount alone, by the rule of the module docstring."""

    def __init__(self, fail_divisor: int):
        self.fail_divisor = fail_divisor

    def charge(self, amount_cents: int, currency: str) -> Decision:
        # ``currency`` plays no part. The divisor is tested first: a modulo
        # by 0 would raise ZeroDivisionError.
        if self.fail_divisor and amount_cents % self.fail_divisor == 0:
            return Decision(False, INSUFFICIENT_FUNDS)
        return Decision(True)

    def refund(self, amount_cents: int, currency: str) -> None:
        """Give a confirmed charge back. The mock never refuses; a real
        provider's refusal would raise, and the consumer would keep the
        order.cancelled event (with the error) for an operator."""
