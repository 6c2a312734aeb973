"""The orders side of the saga: payment events settle orders.

``payment.confirmed`` moves a ``new`` order to ``paid``; ``payment.failed`` to
``cancelled`` with the provider's reason. Nothing moves an order that is no
longer ``new``: a payment confirmed for an order the payment timeout cancelled
already is refunded by payments (it answers the order.cancelled event).

Beside the loop, the payment-timeout sweep (goshop_orders.sweeper) runs every
``GOSHOP_ORDER_SWEEP_INTERVAL_SECONDS``. Run with ``python -m
goshop_orders.consumer`` (health and metrics on :8086, ``--port`` to move them).
"""

from __future__ import annotations

import logging
import sys

import sqlalchemy as sa

from goshop_common.clock import utcnow
from goshop_common.messaging.consumer import Event, EventConsumer, build_consumer, run_consumer
from goshop_common.messaging.worker import Periodic
from goshop_domain.events import PAYMENT_CONFIRMED, PAYMENT_FAILED, PAYMENTS_TOPIC
from goshop_orders.models import CANCELLED, INBOX, PAID
from goshop_orders.orders import Orders
from goshop_orders.settings import OrdersConsumerSettings
from goshop_orders.sweeper import PaymentTimeouts

log = logging.getLogger("goshop.orders.consumer")

OUTCOMES = {PAYMENT_CONFIRMED.name: PAID, PAYMENT_FAILED.name: CANCELLED}


class PaymentOutcomes:
    """The handler of payments.events: settle the order each payment event is
    about, a batch in one statement (Orders.settle), as applying its
    events one by one would. The consumer has already checked the events
    against the contract, so their fields are sound."""

    def __init__(self, clock=utcnow):
        self.clock = clock

    def __call__(self, db: sa.Connection, batch: list[Event]) -> None:
        # Another event type on the topic (payment.refunded) is not ours to act on.
        ours = [event for event in batch if event.type in OUTCOMES]
        settlements = []
        for event in ours:
            status = OUTCOMES[event.type]
            settlements.append(
                (event.fields["order_id"], status, event.fields["reason"] if status == CANCELLED else None)
            )
        settled = Orders(db, self.clock).settle(settlements)
        for event, (order_id, _status, _reason) in zip(ours, settlements, strict=True):
            if order_id in settled:
                settled.discard(order_id)  # the order's first settlement; a later one finds it settled
                continue
            # Already cancelled by the payment timeout, say: payments refunds a
            # confirmed payment when it reads that order's order.cancelled.
            log.warning(
                "order unknown or already settled",
                extra={"order_id": str(order_id), "event_id": str(event.event_id), "event": event.type},
            )


def build(settings: OrdersConsumerSettings, **consumer_overrides) -> EventConsumer:
    return build_consumer(
        settings,
        "orders",
        settings.orders_consumer_group,
        [PAYMENTS_TOPIC],
        INBOX,
        PaymentOutcomes(),
        **consumer_overrides,
    )


def payment_timeouts(settings: OrdersConsumerSettings, worker: EventConsumer) -> list[Periodic]:
    """The payment-timeout sweep, on the consumer's own connection pool."""
    sweeper = PaymentTimeouts(worker.engine, settings.order_payment_timeout, utcnow)
    return [Periodic("payment-timeouts", settings.order_sweep_interval, sweeper.sweep)]


def main(argv: list[str] | None = None) -> int:
    return run_consumer(
        build,
        settings_class=OrdersConsumerSettings,
        service="orders-consumer",
        port=8086,
        argv=argv,
        tasks=payment_timeouts,
    )


if __name__ == "__main__":
    sys.exit(main())
