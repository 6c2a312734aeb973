"""The console's pages: thin views over the ops API's own reads and replay
(goshop_ops.views), the saga's drawing (drawing) and the health strip (health).

Each page checks, in this order: the console is served here at all
(production: only at GOSHOP_OPS_CONSOLE_ORIGIN), the operator is signed in,
and a form post comes from the console's origin with the session's CSRF
token. A refusal is a page that says why, never an empty one.
"""

from __future__ import annotations

import datetime as dt
import logging

from pyramid.csrf import check_csrf_token, get_csrf_token
from pyramid.events import NewResponse, subscriber
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.renderers import render_to_response
from pyramid.view import view_config

from goshop_common.web.errors import ApiError
from goshop_ops.console import PREFIX, health, search, served, sessions
from goshop_ops.console.drawing import draw, latency
from goshop_ops.explain import LlmUnavailable, RulesExplainer
from goshop_ops.views import find_parked, find_timeline, list_parked, reading, replay_parked

log = logging.getLogger("goshop.ops.console")

# No inline script or style anywhere (the one script and the stylesheet are
# files under /ops/static/), no framing, forms posted only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

CONSOLE_OFF = (
    "The ops console is off here. Production serves it only at the origin the operators set in "
    "GOSHOP_OPS_CONSOLE_ORIGIN (https)."
)
SIGNED_OUT = "Your console session has ended (signed out or expired). Sign in again."
WRONG_ORIGIN = "This form was not sent from the console's own address, so it was refused."
BAD_CSRF = "This form's CSRF token is missing or wrong, so nothing was done. Reload the page and try again."


@subscriber(NewResponse)
def security_headers(event) -> None:
    """Every console answer (pages, redirects, refusals, static files) carries
    the headers; pages about customers' orders are never cached."""
    request = event.request
    if not request.path_info.startswith(f"{PREFIX}/"):
        return
    event.response.headers.update(SECURITY_HEADERS)
    if not request.path_info.startswith(f"{PREFIX}/static/"):
        event.response.headers["Cache-Control"] = "no-store"


def page(request, template: str, values: dict | None = None, status: int = 200):
    signed_in = sessions.is_signed_in(request)
    common = {
        "signed_in": signed_in,
        "csrf_token": get_csrf_token(request) if signed_in else "",
        "session_expires": _utc(sessions.expires_at(request)) if signed_in else None,
        "prefix": PREFIX,
    }
    response = render_to_response(template, {**common, **(values or {})}, request=request)
    response.status_int = status
    return response


def message(request, title: str, text: str, status: int):
    return page(request, "message.jinja2", {"title": title, "text": text}, status)


def _utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _refused(request, *, posting: bool = False):
    """The page that refuses ``request``, or None when it may go on."""
    settings = request.registry.goshop_settings
    if not served(settings):
        return message(request, "Console off", CONSOLE_OFF, 404)
    if not sessions.is_signed_in(request):
        if posting:
            return message(request, "Signed out", SIGNED_OUT, 401)
        return HTTPSeeOther(location=f"{PREFIX}/signin")
    if posting:
        return _refused_post(request)
    return None


def _from_elsewhere(request) -> bool:
    """A form posted from anywhere but the configured console origin (none
    configured: development, where the CSRF token alone is checked)."""
    origin = request.registry.goshop_settings.console_origin
    return bool(origin) and request.headers.get("Origin", "").lower() != origin


def _refused_post(request):
    if _from_elsewhere(request):
        return message(request, "Refused", WRONG_ORIGIN, 403)
    if not check_csrf_token(request, raises=False):
        return message(request, "Refused", BAD_CSRF, 403)
    return None


# --- signing in and out ------------------------------------------------------


@view_config(route_name="ops_console_signin", request_method="GET")
def signin_form(request):
    if not served(request.registry.goshop_settings):
        return message(request, "Console off", CONSOLE_OFF, 404)
    if sessions.is_signed_in(request):
        return HTTPSeeOther(location=f"{PREFIX}/")
    return page(request, "signin.jinja2")


@view_config(route_name="ops_console_signin", request_method="POST")
def signin(request):
    settings = request.registry.goshop_settings
    if not served(settings):
        return message(request, "Console off", CONSOLE_OFF, 404)
    # No session yet, so no CSRF token: SameSite=Strict and the origin check
    # keep another site from signing a browser in.
    if _from_elsewhere(request):
        return message(request, "Refused", WRONG_ORIGIN, 403)
    why = sessions.refusal(request.POST.get("token", ""), settings.ops_token)
    if why is not None:
        log.warning("console sign-in refused")
        return page(request, "signin.jinja2", {"error": why}, 401)
    sessions.sign_in(request, settings.console_session_seconds)
    log.info("console sign-in")
    return HTTPSeeOther(location=f"{PREFIX}/")


@view_config(route_name="ops_console_signout", request_method="POST")
def signout(request):
    refused = _refused(request, posting=True)
    if refused is not None:
        return refused
    sessions.sign_out(request)
    return page(request, "signin.jinja2", {"notice": "Signed out."})


# --- finding orders ------------------------------------------------------------


def _count_parked(request) -> int | None:
    try:
        return sum(1 for entry in list_parked(request) if not entry.replayed)
    except ApiError:
        return None


def _count_settled(request) -> dict[str, int]:
    with reading(request) as db:
        return health.settled_orders(db, dt.datetime.now(dt.UTC))


@view_config(route_name="ops_console_home", request_method="GET")
def home(request):
    refused = _refused(request)
    if refused is not None:
        return refused
    settings = request.registry.goshop_settings
    strip = health.gather(
        settings.ready_urls,
        settings.metrics_urls,
        lambda: _count_parked(request),
        lambda: _count_settled(request),
    )
    return page(request, "home.jinja2", {"health": strip})


@view_config(route_name="ops_console_orders", request_method="GET")
def find_orders(request):
    refused = _refused(request)
    if refused is not None:
        return refused
    raw = request.GET.get("q", "")
    if not raw.strip():
        return page(request, "home.jinja2", {"search_error": "Enter an order id or a customer's email.", "q": raw}, 400)
    order_id = search.order_id_of(raw)
    if order_id is not None:
        return HTTPSeeOther(location=f"{PREFIX}/orders/{order_id}")
    email = search.email_of(raw)
    if email is None:
        text = f"“{raw.strip()}” is neither an order id nor an email."
        return page(request, "home.jinja2", {"search_error": text, "q": raw}, 400)
    with reading(request) as db:
        found = search.latest_orders(db, email)
    return page(request, "orders.jinja2", {"found": found, "q": raw})


@view_config(route_name="ops_console_order", request_method="GET")
def order(request):
    refused = _refused(request)
    if refused is not None:
        return refused
    raw = request.matchdict["id"]
    order_id = search.order_id_of(raw)
    if order_id is None:
        return message(request, "Not an order id", f"“{raw}” is not an order id.", 404)
    if str(order_id) != raw:
        return HTTPSeeOther(location=f"{PREFIX}/orders/{order_id}")
    found = find_timeline(request, order_id)
    if found is None:
        return message(request, "No such order", f"No order has the id {order_id}.", 404)
    llm_error = None
    try:
        answer = request.registry.ops_explainer.explain(found)
    except LlmUnavailable as exc:
        llm_error = str(exc)
        answer = RulesExplainer().explain(found)
    return page(
        request,
        "order.jinja2",
        {"order": found.order, "drawing": draw(found), "answer": answer, "llm_error": llm_error, "latency": latency},
    )


# --- parked events ---------------------------------------------------------------


@view_config(route_name="ops_console_parked", request_method="GET")
def parked(request):
    refused = _refused(request)
    if refused is not None:
        return refused
    try:
        entries = list_parked(request)
    except ApiError as exc:
        return _broker_unavailable(request, exc)
    return page(request, "parked.jinja2", {"entries": entries})


def _broker_unavailable(request, exc: ApiError):
    return message(request, "Broker unavailable", f"The parked events could not be read: {exc.message}.", exc.status)


def _place(request) -> tuple[str, str, str]:
    return request.matchdict["dlq_topic"], request.matchdict["partition"], request.matchdict["offset"]


@view_config(route_name="ops_console_replay", request_method="GET")
def replay_confirmation(request):
    refused = _refused(request)
    if refused is not None:
        return refused
    topic, partition, offset = _place(request)
    try:
        entry = find_parked(request, topic, partition, offset)
    except ApiError as exc:
        if exc.status != 404:
            return _broker_unavailable(request, exc)
        return message(request, "Not parked", f"Nothing is parked at {topic} {partition}/{offset}.", 404)
    return page(request, "replay.jinja2", {"entry": entry})


@view_config(route_name="ops_console_replay", request_method="POST")
def replay(request):
    refused = _refused(request, posting=True)
    if refused is not None:
        return refused
    topic, partition, offset = _place(request)
    try:
        done = replay_parked(request, topic, partition, offset)
    except ApiError as exc:
        return page(request, "replayed.jinja2", {"error": exc.message, "place": (topic, partition, offset)}, exc.status)
    return page(request, "replayed.jinja2", {"done": done, "place": (topic, partition, offset)})
