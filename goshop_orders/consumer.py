"""The orders side of the saga: payment events settle orders.

``payment.confirmed`` moves a ``new`` order to ``paid``; ``payment.failed`` to
``cancelled`` with the provider's reason. Nothing moves an order that is no
longer ``new``. Run with ``python -m goshop_orders.consumer``.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import uuid

from sqlalchemy.orm import Session as DbSession

from goshop_common.consumer import Event, EventConsumer, PoisonEvent
from goshop_common.db import make_engine
from goshop_common.kafka import PAYMENTS_TOPIC, make_consumer
from goshop_common.settings import Settings, load_settings
from goshop_common.worker import configure_logging, on_sigterm
from goshop_orders.models import CANCELLED, INBOX, PAID
from goshop_orders.orders import Orders

log = logging.getLogger("goshop.orders.consumer")

GROUP = "goshop-orders"
OUTCOMES = {"payment.confirmed": PAID, "payment.failed": CANCELLED}


def apply_payment_event(db: DbSession, event: Event) -> None:
    status = OUTCOMES.get(event.type)
    if status is None:
        return  # another event type on the topic: not ours to act on
    try:
        order_id = uuid.UUID(str(event.body["order_id"]))
    except (KeyError, ValueError):
        raise PoisonEvent("no valid order_id") from None
    reason = event.body.get("reason") if status == CANCELLED else None
    if reason is not None and not isinstance(reason, str):
        raise PoisonEvent("reason is not a string")
    settled = Orders(db, lambda: dt.datetime.now(dt.UTC)).settle(order_id, status, reason)
    if not settled:
        log.warning(
            "order unknown or already settled",
            extra={"order_id": str(order_id), "event_id": str(event.event_id), "event": event.type},
        )


def build(settings: Settings, **consumer_overrides) -> EventConsumer:
    engine = make_engine(settings, pool_size=2, max_overflow=0)
    consumer = make_consumer(settings.kafka_bootstrap, GROUP, [PAYMENTS_TOPIC], **consumer_overrides)
    return EventConsumer("orders", engine, consumer, INBOX, apply_payment_event)


def main() -> int:
    settings = load_settings()
    configure_logging(settings)
    worker = build(settings)
    on_sigterm(worker.stop)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
