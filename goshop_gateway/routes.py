"""The upstream routes the gateway forwards, and why their table is generated.

A route is declared once, by the service that answers it: its Cornice
``Service`` (name, path, description) and its views' decorators (methods, and
the security scheme each needs). The gateway reads those declarations from
``goshop_gateway.upstream_routes``, which ``python -m goshop_devtools.gateway_routes``
writes from the services' own ``Service`` objects and which is committed;
``tests/unit/goshop_gateway/test_routes.py`` fails while it differs from what
the services declare. A new route in a service is one command here, never a
second declaration.

Why generated and committed, rather than:

- imported from the services at start: the gateway imports no service package;
- read from the upstreams' ``/openapi.json`` at start: the gateway must start,
  and answer 502 on the route it knows by name (its metrics label), while an
  upstream is down;
- a route table in goshop_common that the services and the gateway both read:
  every service would have to build its ``Service`` objects, methods and
  security from it, so each route would be written in the table and again in
  the views that answer it.
"""

from __future__ import annotations

import dataclasses

# The services the gateway forwards to: ``goshop_<name>`` declares its routes
# in ``goshop_<name>.views`` and is reached at the ``<name>_url`` setting.
UPSTREAMS = ("users", "orders", "payments", "ops")


@dataclasses.dataclass(frozen=True)
class Route:
    """One route of an upstream, forwarded unchanged to the same path there."""

    upstream: str
    name: str
    path: str
    description: str
    # Method -> the security scheme its caller needs (goshop_common.web.openapi), or None.
    methods: dict[str, str | None]
    # The upstream may wait for an LLM before answering (ops' explain): the
    # read timeout grows by the LLM's own timeout, or the gateway would give
    # up (504) on an answer that is still within its time.
    waits_for_llm: bool = False
    # A page of a service's console (HTML for a browser), not an API
    # operation: forwarded the same way, but no part of the gateway's OpenAPI
    # document, as it is no part of its upstream's.
    page: bool = False
