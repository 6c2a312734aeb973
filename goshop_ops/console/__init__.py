"""The ops console: the ops API's answers as pages, for operators in a browser.

    GET  /ops/                      find an order; the shop's health strip
    GET  /ops/signin, POST          sign in with the operator token (a cookie from then on)
    POST /ops/signout
    GET  /ops/orders?q=             an order id, or a customer's email: their latest orders
    GET  /ops/orders/{id}           the order's saga drawn, and its explanation
    GET  /ops/parked                the events the consumers parked
    GET  /ops/parked/{dlq_topic}/{partition}/{offset}/replay, POST   confirm, then replay one

Rendered on the server (Jinja2 through pyramid_jinja2); one small script,
served as a file, shows times in the operator's zone. Every page is sent
with a Content-Security-Policy that allows no inline script or style and no
framing. Its routes are plain Pyramid routes, not Cornice services: pages are
no part of the JSON API or its OpenAPI document. The gateway forwards them
(``PAGES``, read by ``python -m goshop_devtools.gateway_routes``).
"""

from __future__ import annotations

PREFIX = "/ops"

# name, path, methods, description: the console's routes, as the gateway
# forwards them (a page is no operation of the OpenAPI documents).
PAGES = (
    ("ops_console_home", f"{PREFIX}/", ("GET",), "The ops console: find an order; the shop's health."),
    ("ops_console_signin", f"{PREFIX}/signin", ("GET", "POST"), "Sign in to the ops console."),
    ("ops_console_signout", f"{PREFIX}/signout", ("POST",), "Sign out of the ops console."),
    ("ops_console_orders", f"{PREFIX}/orders", ("GET",), "Orders by id or customer email."),
    ("ops_console_order", f"{PREFIX}/orders/{{id}}", ("GET",), "An order's saga drawn, and explained."),
    ("ops_console_parked", f"{PREFIX}/parked", ("GET",), "The events the consumers parked."),
    (
        "ops_console_replay",
        f"{PREFIX}/parked/{{dlq_topic}}/{{partition}}/{{offset}}/replay",
        ("GET", "POST"),
        "Confirm, then replay, one parked event.",
    ),
    ("ops_console_static", f"{PREFIX}/static/{{file}}", ("GET",), "The console's stylesheet and script."),
)
# The order page waits for the LLM's explanation when one is configured.
WAITS_FOR_LLM = frozenset({"ops_console_order"})


def served(settings) -> bool:
    """Whether the console is served: always in development; in production
    only once GOSHOP_OPS_CONSOLE_ORIGIN says where operators open it."""
    return bool(settings.console_origin) or not settings.production


def includeme(config) -> None:
    from goshop_ops.console.sessions import SignedOut, session_factory

    settings = config.registry.goshop_settings
    config.include("pyramid_jinja2")
    config.add_jinja2_search_path("goshop_ops.console:templates", name=".jinja2")
    config.set_session_factory(
        session_factory(settings.ops_token, secure=settings.production, max_age=settings.console_session_seconds)
    )
    config.registry.ops_console_signed_out = SignedOut()
    for name, path, _methods, _description in PAGES:
        if name != "ops_console_static":
            config.add_route(name, path)
    config.add_static_view(name=f"{PREFIX.strip('/')}/static", path="goshop_ops.console:static", cache_max_age=300)
    config.scan("goshop_ops.console.views")
