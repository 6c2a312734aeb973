"""The gateway: the shop's one public entry point (:8080)."""

from __future__ import annotations

from goshop_common.settings import load_settings
from goshop_common.web.app import make_service_app
from goshop_gateway.routes import UPSTREAMS
from goshop_gateway.settings import GatewaySettings
from goshop_gateway.upstream import Upstreams


def includeme(config) -> None:
    settings: GatewaySettings = config.registry.goshop_settings
    config.registry.upstreams = Upstreams(
        {name: getattr(settings, f"{name}_url") for name in UPSTREAMS},
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        public_url=settings.public_url,
    )
    config.include("goshop_common.auth.jwks")
    # Registered explicitly, not scanned: the proxy routes are built from a table
    # (goshop_gateway.routes).
    config.include("goshop_gateway.views")


def make_app(settings: GatewaySettings, ini: dict | None = None):
    return make_service_app(settings, ini, service="gateway", views=None, includes=("goshop_gateway",), database=False)


def main(global_config, **ini):
    """Paste entry point, served by ``python -m goshop_common.web.serve goshop_gateway/development.ini``
    (not pserve: it has neither the internal port nor the slow-client guard)."""
    return make_app(load_settings(GatewaySettings, ini), ini)
