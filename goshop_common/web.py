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
    config.include("goshop_common.db")
    config.include("goshop_common.health")
    logging.getLogger("goshop").setLevel(config.registry.goshop_settings.log_level)
