"""The payments service: a read API on :8083, and the consumer of order events
(``python -m goshop_payments.consumer``) that decides each order's payment."""

from __future__ import annotations

from goshop_common.settings import load_settings
from goshop_common.web.app import make_service_app
from goshop_payments.settings import PaymentsSettings


def make_app(settings: PaymentsSettings, ini: dict | None = None):
    return make_service_app(
        settings, ini, service="payments", views="goshop_payments.views", includes=("goshop_common.auth.jwks",)
    )


def main(global_config, **ini):
    """Paste entry point, served by ``python -m goshop_common.web.serve goshop_payments/development.ini``
    (not pserve: it has neither the internal port nor the slow-client guard)."""
    return make_app(load_settings(PaymentsSettings, ini), ini)
