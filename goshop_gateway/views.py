"""The gateway's routes: every public API of the shop behind one origin.

The upstreams' routes come from their own declarations (goshop_gateway.routes).
One that needs a user's access token checks it here, before any upstream
call, and the upstream checks it again. Each route forwards to one upstream
with the request id, the client's address and its end-to-end headers.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from pyramid.response import Response

from goshop_common.auth.tokens import authenticated_claims, require_access_token
from goshop_common.observability.tracing import CONTEXT_HEADERS
from goshop_common.web.errors import error_response
from goshop_common.web.health import HEALTH, OK, live
from goshop_common.web.openapi import BEARER, error, proxied
from goshop_common.web.requestlog import REQUEST_ID_HEADER
from goshop_common.web.rest import JSON, Service, Tag, body_validator
from goshop_gateway.routes import Route
from goshop_gateway.schemas import CheckoutSchema
from goshop_gateway.upstream import Timeout, UpstreamFailure, end_to_end_items, request_headers
from goshop_gateway.upstream_routes import ROUTES

READY_TIMEOUT = Timeout(connect=1.0, read=2.0)


# Set by the gateway alone: whatever a client sent under these names is dropped,
# so an upstream never reads a client's own claim about its address or scheme,
# nor its trace context: a traced gateway sends its own (its upstream client's
# span, continuing the client's only from a trusted proxy:
# goshop_common.observability.tracing), an untraced one none.
FORWARDING_HEADERS = frozenset(
    {
        *CONTEXT_HEADERS,
        "x-request-id",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-by",
        "x-real-ip",
    }
)


def forward_headers(request) -> list[tuple[str, str]]:
    """The headers an upstream gets. The gateway is the edge: X-Forwarded-For
    is one address, the client it believes (request.client_ip: the peer, or
    what a trusted proxy such as the ingress says), never the client's chain."""
    headers = [
        (n, v) for n, v in end_to_end_items(request_headers(request.environ)) if n.lower() not in FORWARDING_HEADERS
    ]
    headers.append((REQUEST_ID_HEADER, request.request_id))
    if request.client_ip:
        headers.append(("X-Forwarded-For", request.client_ip))
    headers.append(("X-Forwarded-Proto", request.scheme))
    return headers


def _respond(upstream_response) -> Response:
    response = Response(status=upstream_response.status, body=upstream_response.body)
    response.headerlist = [*upstream_response.headers, ("Content-Length", upstream_response.content_length)]
    return response


def forward(request, upstream: str, method: str, path: str, body: bytes | None, headers=None, timeout=None) -> Response:
    try:
        result = request.registry.upstreams.request(
            upstream, method, path, headers if headers is not None else forward_headers(request), body, timeout
        )
    except UpstreamFailure as failure:
        return error_response(failure.status, failure.message)
    return _respond(result)


def llm_timeout(settings) -> Timeout:
    return Timeout(
        connect=settings.upstream_connect_timeout, read=settings.upstream_read_timeout + settings.ollama_timeout
    )


def _proxy(route: Route, method: str):
    # Only a user's access token is the gateway's to check. Another scheme
    # (ops' operator token) is its upstream's alone, checked there from the
    # Authorization header forwarded unchanged.
    protected = route.methods[method] == BEARER

    def view(request):
        if protected:
            authenticated_claims(request, request.registry.token_verifier)
        path = request.path_qs
        timeout = llm_timeout(request.registry.goshop_settings) if route.waits_for_llm else None
        return forward(
            request, route.upstream, request.method, path, request.body if request.body else None, timeout=timeout
        )

    view.__name__ = f"proxy_{route.name}"
    return view


def _proxy_service(route: Route) -> Service:
    service = Service(name=route.name, path=route.path, description=route.description)
    for method in route.methods:
        service.add_view(method, _proxy(route, method))
    return service


# Documented by the upstreams' own documents (goshop_common.web.openapi).
SERVICES = [proxied(_proxy_service(route), route.upstream) for route in ROUTES if not route.page]
# Consoles' pages: plain routes, which the OpenAPI document does not list.
PAGES = [route for route in ROUTES if route.page]


checkout = Service(
    name="checkout",
    path="/v1/checkout",
    description="Place an order (Idempotency-Key honoured).",
    tag=Tag("checkout", "Place an order through the gateway, which checks it before the orders service sees it."),
)


@checkout.post(
    schema=CheckoutSchema(),
    validators=(require_access_token, body_validator),
    content_type=JSON,
    auth=BEARER,
    upstream="orders /v1/orders",
)
def checkout_view(request):
    body = json.dumps(
        {"amount_cents": request.validated["amount_cents"], "currency": request.validated["currency"]}
    ).encode()
    headers = [(n, v) for n, v in forward_headers(request) if n.lower() != "content-type"]
    headers.append(("Content-Type", "application/json"))
    return forward(request, "orders", "POST", "/v1/orders", body, headers)


ready = Service(name="ready", path="/ready", description="Every upstream is ready.", tag=HEALTH)


def _upstream_state(upstreams, request_id: str, name: str) -> str:
    headers = [(REQUEST_ID_HEADER, request_id)]
    try:
        result = upstreams.request(name, "GET", "/ready", headers, None, timeout=READY_TIMEOUT)
    except UpstreamFailure as failure:
        return "timeout" if failure.status == 504 else "unavailable"
    return "ok" if result.status == 200 else f"not ready ({result.status})"


def upstream_states(upstreams, request_id: str) -> dict[str, str]:
    """Every upstream's ``/ready``, asked at once: ``{"orders": "ok", ...}``."""
    names = sorted(upstreams.urls)
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return dict(zip(names, pool.map(lambda n: _upstream_state(upstreams, request_id, n), names), strict=True))


@ready.get(responses={200: OK, 503: error("not ready: an upstream is not (which one is told on the internal port)")})
def ready_view(request):
    # The internet (and the kubelet) learn only yes or no: which upstream is
    # down, and how, is for operators, on the internal port (ready_details_view).
    states = upstream_states(request.registry.upstreams, request.request_id)
    if any(state != "ok" for state in states.values()):
        return error_response(503, "not ready")
    return {"status": "ok"}


def ready_details_view(request):
    """The internal port's ``/ready``: 503 naming the failing upstreams, and
    every upstream's state either way."""
    states = upstream_states(request.registry.goshop_public_registry.upstreams, request.request_id)
    failing = [name for name, state in states.items() if state != "ok"]
    if failing:
        response = error_response(503, f"not ready: {', '.join(failing)}")
        response.json_body = {**response.json_body, "upstreams": states}
        return response
    return {"status": "ok", "upstreams": states}


def includeme(config) -> None:
    for service in (*SERVICES, checkout, live, ready):
        config.add_cornice_service(service)
    for route in PAGES:
        config.add_route(route.name, route.path)
        for method in route.methods:
            config.add_view(_proxy(route, method), route_name=route.name, request_method=method)
    config.add_internal_view("ready_details", "/ready", ready_details_view)
