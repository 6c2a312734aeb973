"""``python -m goshop_payments.consumer``: decide a payment for every new order."""

from __future__ import annotations

import datetime as dt
import sys

from goshop_common.consumer import EventConsumer
from goshop_common.db import make_engine
from goshop_common.kafka import ORDERS_TOPIC, make_consumer
from goshop_common.settings import Settings, load_settings
from goshop_common.worker import configure_logging, on_sigterm
from goshop_payments.models import INBOX
from goshop_payments.payments import PaymentDecider
from goshop_payments.provider import MockProvider

GROUP = "goshop-payments"


def build(settings: Settings, **consumer_overrides) -> EventConsumer:
    engine = make_engine(settings, pool_size=2, max_overflow=0)
    consumer = make_consumer(settings.kafka_bootstrap, GROUP, [ORDERS_TOPIC], **consumer_overrides)
    decider = PaymentDecider(MockProvider(settings.payments_fail_divisor), lambda: dt.datetime.now(dt.UTC))
    return EventConsumer("payments", engine, consumer, INBOX, decider)


def main() -> int:
    settings = load_settings()
    configure_logging(settings)
    worker = build(settings)
    on_sigterm(worker.stop)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
