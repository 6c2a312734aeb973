"""The settings of orders' two processes: the HTTP service and the orders
consumer (goshop_orders.consumer), each only what it uses."""

from __future__ import annotations

import dataclasses

from goshop_common.settings import (
    ConsumerSettings,
    DatabaseSettings,
    HttpSettings,
    TokenVerifierSettings,
    positive_float,
    setting,
    text,
)
from goshop_domain.settings import OrderMoneySettings
from goshop_orders.retention import IdempotencyKeyTtl


@dataclasses.dataclass(frozen=True)
class OrdersSettings(DatabaseSettings, HttpSettings, TokenVerifierSettings, OrderMoneySettings, IdempotencyKeyTtl):
    """The orders service: takes orders (money bounds), replays idempotency keys."""


@dataclasses.dataclass(frozen=True)
class OrdersConsumerSettings(ConsumerSettings):
    # The payment timeout: the orders consumer cancels an order still new this
    # long after it was placed (reason payment_timeout), looking this often.
    order_payment_timeout: float = setting("GOSHOP_ORDER_PAYMENT_TIMEOUT_SECONDS", positive_float, 900.0)
    order_sweep_interval: float = setting("GOSHOP_ORDER_SWEEP_INTERVAL_SECONDS", positive_float, 5.0)
    # Kafka consumer groups; a second deployment of the shop on one broker needs its own.
    orders_consumer_group: str = setting("GOSHOP_ORDERS_CONSUMER_GROUP", text, "goshop-orders")
