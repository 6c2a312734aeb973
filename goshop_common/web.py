"""What every goshop HTTP service includes, in one place."""

import logging


def includeme(config) -> None:
    # goshop_common.errors renders every exception; Cornice's own handler would
    # answer in a second shape.
    config.add_settings({"handle_exceptions": False})
    config.include("cornice")
    config.include("goshop_common.errors")
    config.include("goshop_common.requestlog")
    config.include("goshop_common.bodylimit")
    config.include("goshop_common.clientip")
    logging.getLogger("goshop").setLevel(config.registry.goshop_settings.log_level)


def make_service_app(
    settings,
    ini: dict | None,
    *,
    service: str,
    views: str | None,
    includes: tuple[str, ...] = (),
    database: bool = True,
):
    """A goshop HTTP service: the common concerns, its metrics (labelled
    ``service``), its database (with the seed's /live, /ready and /v1/db/ping)
    unless ``database=False``, the service's own ``includes``, its scanned
    ``views`` and its OpenAPI document."""
    from pyramid.config import Configurator

    with Configurator(settings=dict(ini or {})) as config:
        config.registry.goshop_settings = settings
        config.registry.goshop_service = service
        config.include("goshop_common.web")
        config.include("goshop_common.metrics")
        if database:
            config.include("goshop_common.db")
            config.include("goshop_common.health")
        for include in includes:
            config.include(include)
        if views:
            config.scan(views)
        config.include("goshop_common.openapi")
    return config.make_wsgi_app()
