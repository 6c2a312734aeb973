"""The REST layer: goshop's Cornice ``Service`` and its request validators.

Cornice stays behind this module: views import ``Service`` and
``body_validator`` from here, so replacing Cornice is this file's work.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import colander
import cornice
from cornice.renderer import CorniceRenderer
from cornice.validators import colander_querystring_validator

from goshop_common.web.errors import error_response

if TYPE_CHECKING:
    from pyramid.request import Request
    from pyramid.response import Response

# A view a Service's decorators register, handed back unchanged.
View = TypeVar("View", bound=Callable[..., Any])

# The one media type of goshop's request bodies: a view's ``content_type``.
JSON = ("application/json",)


class JsonRenderer(CorniceRenderer):
    """Cornice's renderer (``cornicejson``, every service view's) offering JSON
    only: an answer is ``application/json`` whatever the ``Accept`` header
    says, as the OpenAPI document declares it, never ``text/plain``. A 204
    has no body (Cornice's own rule)."""

    acceptable = JSON


def _message_for(error: dict[str, Any]) -> str:
    """The message goshop shows for one of Cornice's collected errors: the
    envelope's wording where Cornice has its own."""
    description = error.get("description")
    if isinstance(description, (list, tuple)):
        description = description[0] if description else None
    text = str(description or "invalid request")
    # Cornice's own wording for a body it could not parse.
    if isinstance(description, bytes):  # Cornice's content-type and accept errors
        text = description.decode("ascii", "replace")
    if text.startswith("Invalid JSON"):
        return "invalid json"
    if text.startswith("Should be a JSON object") or "is not a mapping type" in text:
        return "request body must be a JSON object"
    if error.get("location") == "header" and error.get("name") == "Content-Type":
        return "content type must be application/json"
    return text


def json_error_handler(request: Request) -> Response:
    """Cornice's collected errors in goshop's envelope: the first error's message
    is ``error`` (the seed's strings come from the schema nodes), all of them go
    to ``details``."""
    errors = list(request.errors)
    status = request.errors.status or 400
    details = []
    for error in errors:
        detail = {
            "location": error.get("location"),
            "name": error.get("name") or None,
            "description": _message_for(error),
        }
        if detail not in details:
            details.append(detail)
    # An unparseable body also fails every field; only the parse error matters.
    parse_errors = [d for d in details if d["description"] in ("invalid json", "request body must be a JSON object")]
    details = parse_errors or details
    message = details[0]["description"] if details else "invalid request"
    # Whatever error came first, a 415 is about the content type.
    if status == 415:
        message = "content type must be application/json"
    return error_response(status, message, details=details)


# What a view declares for the OpenAPI document (goshop_common.web.openapi), next
# to its schema and validators: ``responses`` ({status: Reply}), ``auth`` (the
# security scheme its caller needs), ``headers`` and ``path`` (colander nodes
# of the header and path parameters it reads), ``upstream`` (the gateway: the
# "<upstream> <path>" whose operation it forwards to, and documents with).
DOC_ARGUMENTS = ("responses", "auth", "headers", "path", "upstream")


@dataclasses.dataclass(frozen=True)
class Tag:
    """The resource a service's operations belong to, which groups them in
    the OpenAPI document (and a generated client's modules)."""

    name: str
    description: str


class Service(cornice.Service):
    """A Cornice service whose every error speaks goshop's envelope, and whose
    views say what they answer; ``tag`` is the resource it serves."""

    def __init__(self, *args: Any, tag: Tag | None = None, **kwargs: Any):
        self.documentation: dict[str, dict[str, Any]] = {}
        self.tag = tag
        # Cornice attaches the service to the module ``depth`` frames up, for
        # config.scan to find: one more, for this frame.
        kwargs["depth"] = kwargs.get("depth", 1) + 1
        super().__init__(*args, **kwargs)

    def default_error_handler(self, request: Request) -> Response:
        # Cornice's hook for the errors its validators collected.
        return json_error_handler(request)

    def add_view(self, method: str, view: Callable[..., Any], **kwargs: Any) -> None:
        # Popped before Cornice sees them: Pyramid would take them for predicates.
        self.documentation[method.upper()] = {name: kwargs.pop(name) for name in DOC_ARGUMENTS if name in kwargs}
        super().add_view(method, view, **kwargs)

    # Cornice's decorators, typed: each registers the view and hands it back.
    def decorator(self, method: str, **kwargs: Any) -> Callable[[View], View]:
        def wrapper(view: View) -> View:
            self.add_view(method, view, **kwargs)
            return view

        return wrapper

    def get(self, **kwargs: Any) -> Callable[[View], View]:
        return self.decorator("GET", **kwargs)

    def post(self, **kwargs: Any) -> Callable[[View], View]:
        return self.decorator("POST", **kwargs)

    def put(self, **kwargs: Any) -> Callable[[View], View]:
        return self.decorator("PUT", **kwargs)

    def delete(self, **kwargs: Any) -> Callable[[View], View]:
        return self.decorator("DELETE", **kwargs)


# (id(schema), id(settings)) -> (schema, settings, the schema bound to them);
# the first two are kept so that neither id can be reused while cached.
_BOUND: dict[tuple[int, int], tuple[Any, Any, Any]] = {}


def _bound(schema: colander.SchemaNode, request: Request) -> colander.SchemaNode:
    """``schema`` bound to the app's settings, which is all its deferred nodes
    read (goshop_common.web.schemas): once per schema and app, not per request,
    since colander's bind() clones the whole schema. A bound schema is only
    read when deserializing, so threads share it."""
    settings = request.registry.goshop_settings
    key = (id(schema), id(settings))
    cached = _BOUND.get(key)
    if cached is None:
        cached = _BOUND[key] = (schema, settings, schema.bind(settings=settings))
    return cached[2]


def body_validator(request: Request, schema: colander.SchemaNode | None = None, **kwargs: Any) -> None:
    """Validate the JSON body against ``schema``, bound to the request so that
    deferred validators can read settings (password length, money bounds)."""
    if schema is None:
        return
    # Read once: each read of request.body seeks and reads the body again.
    raw = request.body
    if raw and request.content_type not in JSON:
        # Cornice would parse a form body (and fail with a 500 on a multipart
        # type without a boundary); goshop's bodies are JSON only, even where
        # a view takes no content_type (to allow an empty body).
        request.errors.add("header", "Content-Type", "content type must be application/json")
        request.errors.status = 415
        return
    try:
        body = _body_cstruct(request, raw)
    except RecursionError:
        # json.loads gives up on deeply nested arrays with RecursionError,
        # which is not the ValueError Cornice expects.
        request.errors.add("body", "", "Invalid JSON: nested too deeply")
        return
    bound = _bound(schema, request)
    if body is _REFUSED:
        # As Cornice's validator reports it: the parse error, then the
        # body's "Required" (Cornice goes on to validate an empty request).
        request.errors.add("body", "", request.localizer.translate(bound.missing_msg))
        return
    try:
        validated = bound.deserialize(body)
    except colander.Invalid as exc:
        for name, message in exc.asdict(translate=request.localizer.translate).items():
            request.errors.add("body", _field(name, bound.name), message)
        return
    request.validated.update(validated)


# Cornice's colander_body_validator, minus what it does per request and
# nobody reads: it defines a schema class (a metaclass and all) around the
# body's, and collects the URL, query string, headers and cookies for it
# (extract_cstruct), a cost that shows on a checkout (docs/adr/0007). The
# body is read, refused and reported as Cornice does, to the message.
_REFUSED = object()
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
_JSONISH = re.compile("^application/(.*?)json$")


def _field(name: str, top: str) -> str:
    """An error's field, as Cornice names it: its path below the body, the
    body's own name left out (Cornice's body node is named ``body``)."""
    if not top:
        return name
    return "" if name == top else name.removeprefix(f"{top}.")


def _body_cstruct(request: Request, raw: bytes) -> Any:
    """The body (``raw``, as read) as extract_cstruct reads it, or _REFUSED
    with the error added."""
    content_type = request.content_type
    if content_type in _FORMS:
        return request.POST.mixed()
    if content_type and not _JSONISH.match(content_type):
        return raw
    if not raw:
        return {}
    try:
        # As webob's request.json_body, without reading the body again.
        body = json.loads(raw.decode(request.charset))
    except ValueError as exc:
        request.errors.add("body", "", f"Invalid JSON: {exc}")
        return _REFUSED
    if not hasattr(body, "items") and not isinstance(body, list):
        request.errors.add("body", "", "Should be a JSON object or an array")
        return _REFUSED
    return body


def querystring_validator(request: Request, schema: colander.SchemaNode | None = None, **kwargs: Any) -> None:
    """Validate the query string against ``schema``, bound as body_validator
    binds it."""
    if schema is None:
        return
    colander_querystring_validator(request, schema=_bound(schema, request), **kwargs)
