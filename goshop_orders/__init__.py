"""The orders service: the orders API. Its consumer of payment events runs as
its own process (``python -m goshop_orders.consumer``)."""

from __future__ import annotations

from goshop_common.settings import load_settings
from goshop_common.web.app import make_service_app
from goshop_orders.settings import OrdersSettings


def make_app(settings: OrdersSettings, ini: dict | None = None):
    return make_service_app(
        settings, ini, service="orders", views="goshop_orders.views", includes=("goshop_common.auth.jwks",)
    )


def main(global_config, **ini):
    """Paste entry point, served by ``python -m goshop_common.web.serve goshop_orders/development.ini``
    (not pserve: it has neither the internal port nor the slow-client guard)."""
    return make_app(load_settings(OrdersSettings, ini), ini)
