"""The settings of an order's money, for every process that validates an order
body: orders, and the gateway, which checks one before forwarding it."""

from __future__ import annotations

import dataclasses

from goshop_common.settings import BaseSettings, positive_int, setting
from goshop_domain.currencies import ISO_4217


def currency(raw: str) -> str:
    code = raw.strip().upper()
    if code not in ISO_4217:
        raise ValueError(f"not an ISO 4217 currency code: {raw.strip()!r}")
    return code


@dataclasses.dataclass(frozen=True)
class OrderMoneySettings(BaseSettings):
    """What goshop_domain.money's nodes are bound to (schema.bind(settings=...))."""

    default_currency: str = setting("GOSHOP_DEFAULT_CURRENCY", currency, "RUB")
    order_max_amount_cents: int = setting("GOSHOP_ORDER_MAX_AMOUNT_CENTS", positive_int, 100_000_000)
