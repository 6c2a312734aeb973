"""``python -m goshop_payments.consumer``: decide a payment for every new order
(health and metrics on :8087, ``--port`` to move them)."""

from __future__ import annotations

import sys

from goshop_common.clock import utcnow
from goshop_common.messaging.consumer import EventConsumer, build_consumer, run_consumer
from goshop_domain.events import ORDERS_TOPIC
from goshop_payments.models import INBOX
from goshop_payments.payments import PaymentDecider
from goshop_payments.provider import MockProvider
from goshop_payments.settings import PaymentsConsumerSettings


def build(settings: PaymentsConsumerSettings, **consumer_overrides) -> EventConsumer:
    decider = PaymentDecider(MockProvider(settings.payments_fail_divisor), utcnow)
    return build_consumer(
        settings, "payments", settings.payments_consumer_group, [ORDERS_TOPIC], INBOX, decider, **consumer_overrides
    )


def main(argv: list[str] | None = None) -> int:
    return run_consumer(
        build, settings_class=PaymentsConsumerSettings, service="payments-consumer", port=8087, argv=argv
    )


if __name__ == "__main__":
    sys.exit(main())
