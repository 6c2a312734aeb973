"""The settings of payments' two processes: the HTTP service and the payments
consumer (goshop_payments.consumer), each only what it uses."""

from __future__ import annotations

import dataclasses

from goshop_common.settings import (
    ConsumerSettings,
    DatabaseSettings,
    HttpSettings,
    TokenVerifierSettings,
    non_negative_int,
    setting,
    text,
)


@dataclasses.dataclass(frozen=True)
class PaymentsSettings(DatabaseSettings, HttpSettings, TokenVerifierSettings):
    """The payments service: nothing of its own."""


@dataclasses.dataclass(frozen=True)
class PaymentsConsumerSettings(ConsumerSettings):
    # The mock payment provider fails amounts divisible by this (0: never fails).
    payments_fail_divisor: int = setting("GOSHOP_PAYMENTS_FAIL_DIVISOR", non_negative_int, 5)
    # Kafka consumer groups; a second deployment of the shop on one broker needs its own.
    payments_consumer_group: str = setting("GOSHOP_PAYMENTS_CONSUMER_GROUP", text, "goshop-payments")
