"""The payments service: a read API on :8083, and the consumer of order events
(``python -m goshop_payments.consumer``) that decides each order's payment."""

from __future__ import annotations

from pyramid.config import Configurator

from goshop_common.jwks import verifier_from_settings
from goshop_common.settings import Settings, load_settings


def make_app(settings: Settings, ini: dict | None = None):
    with Configurator(settings=dict(ini or {})) as config:
        config.registry.goshop_settings = settings
        config.registry.token_verifier = verifier_from_settings(settings)
        config.include("goshop_common.web")
        config.scan("goshop_payments.views")
        config.include("goshop_common.openapi")
    return config.make_wsgi_app()


def main(global_config, **ini):
    """Paste entry point: ``pserve goshop_payments/development.ini``."""
    return make_app(load_settings(ini), ini)
