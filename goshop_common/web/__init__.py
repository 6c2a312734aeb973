"""The HTTP side of every service: the app factory and its common concerns
(errors, request log, client address, body limit, caching, OpenAPI), the REST
layer over Cornice, the shared request schemas, health views and ``serve``.

``config.include("goshop_common.web")`` adds the common concerns; services are
built with ``goshop_common.web.app.make_service_app``.
"""

from goshop_common.web.app import includeme

__all__ = ["includeme"]
