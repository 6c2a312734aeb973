"""The orders service: the orders API. Its consumer of payment events runs as
its own process (``python -m goshop_orders.consumer``)."""

from __future__ import annotations

from goshop_common.settings import Settings, load_settings
from goshop_common.web.app import make_service_app


def make_app(settings: Settings, ini: dict | None = None):
    return make_service_app(
        settings, ini, service="orders", views="goshop_orders.views", includes=("goshop_common.auth.jwks",)
    )


def main(global_config, **ini):
    """Paste entry point: ``pserve goshop_orders/development.ini``."""
    return make_app(load_settings(ini, service="orders"), ini)
