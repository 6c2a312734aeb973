"""What every goshop HTTP service includes, in one place, and the internal app
each one serves beside its public one.

The public app answers the internet (through the gateway or an Ingress). What
only the operators' side may see — ``/metrics``, detailed readiness — is on a
second, internal app that ``goshop_common.web.serve`` serves on the
process's metrics port, which no Service or Ingress routes to.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from goshop_common.observability import tracing
from goshop_common.observability.metrics import add_metrics_endpoint
from goshop_common.web.health import add_live_route
from goshop_common.web.rest import JsonRenderer

if TYPE_CHECKING:
    from collections.abc import Callable

    from _typeshed.wsgi import WSGIApplication
    from pyramid.config import Configurator
    from pyramid.registry import Registry
    from pyramid.request import Request

    from goshop_common.settings import HttpSettings


def add_internal_view(config: Configurator, name: str, pattern: str, view: Callable[[Request], object]) -> None:
    """``config.add_internal_view(name, pattern, view)``: answer ``GET pattern``
    with ``view`` (rendered as JSON) on the internal port only. The view finds
    the app's own collaborators on ``request.registry.goshop_public_registry``."""
    registry = config.registry
    # An action, so two views for one path conflict at commit, as routes do.
    config.action(
        ("goshop.internal_view", pattern), lambda: registry.goshop_internal_views.append((name, pattern, view))
    )


def make_internal_app(public: Registry) -> WSGIApplication:
    """The internal app of the service whose registry is ``public``: ``/live``,
    ``/metrics`` (the process's series and the app's pool) and the views the
    app added with ``add_internal_view``. Its own requests are not counted: the
    ``goshop_http_*`` series describe the public API, not the scrapes."""
    from pyramid.config import Configurator

    with Configurator() as config:
        config.registry.goshop_settings = public.goshop_settings
        config.registry.goshop_service = public.goshop_service
        config.registry.goshop_public_registry = public
        engine = getattr(public, "dbengine", None)
        if engine is not None:
            config.registry.dbengine = engine
        config.include("goshop_common.web.errors")
        config.include("goshop_common.web.requestlog")
        config.include(add_metrics_endpoint)
        add_live_route(config)
        for name, pattern, view in public.goshop_internal_views:
            config.add_route(name, pattern)
            config.add_view(view, route_name=name, renderer="json", request_method="GET")
    app: WSGIApplication = config.make_wsgi_app()
    return app


def includeme(config: Configurator) -> None:
    config.registry.goshop_internal_views = []
    config.add_directive("add_internal_view", add_internal_view)
    # goshop_common.web.errors renders every exception; Cornice's own handler would
    # answer in a second shape.
    config.add_settings({"handle_exceptions": False})
    config.include("cornice")
    # Here, in the includer of cornice, so that it overrides Cornice's own
    # ``cornicejson`` instead of conflicting with it.
    config.add_renderer("cornicejson", JsonRenderer())
    config.include("goshop_common.web.errors")
    config.include("goshop_common.web.caching")
    config.include("goshop_common.web.requestlog")
    config.include("goshop_common.web.bodylimit")
    config.include("goshop_common.web.clientip")
    logging.getLogger("goshop").setLevel(config.registry.goshop_settings.log_level)


def make_service_app(
    settings: HttpSettings,
    ini: Mapping[str, str] | None,
    *,
    service: str,
    views: str | None,
    includes: tuple[str, ...] = (),
    database: bool = True,
) -> WSGIApplication:
    """A goshop HTTP service: the common concerns, its request metrics
    (labelled ``service``), its database (with the seed's /live, /ready and
    /v1/db/ping) unless ``database=False``, the service's own ``includes``, its
    scanned ``views`` and its OpenAPI document. The public app; its internal
    one (``/metrics`` and the like) is ``app.registry.goshop_internal_app``.
    Traced when the process traces (goshop_common.observability.tracing); the
    internal app never is."""
    from pyramid.config import Configurator

    # Before the database's engine is made, so that it is instrumented.
    tracing.configure(service)
    with Configurator(settings=dict(ini or {})) as config:
        config.registry.goshop_settings = settings
        config.registry.goshop_service = service
        config.include("goshop_common.web")
        config.include("goshop_common.observability.tracing")
        config.include("goshop_common.observability.metrics")
        if database:
            config.include("goshop_common.db")
            config.include("goshop_common.web.health")
        for include in includes:
            config.include(include)
        if views:
            config.scan(views)
        config.include("goshop_common.web.openapi")
    app = config.make_wsgi_app()
    app.registry.goshop_internal_app = make_internal_app(app.registry)
    return tracing.traced_app(app, settings)
