"""One JSON error envelope everywhere: ``{"error": "<message>", "details": [...]}``.

Exception views turn every failure — unknown route, wrong method, oversized
body, database outage, a bug — into that envelope, so a client never sees an
HTML page or a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

import psycopg2
from pyramid.config import Configurator
from pyramid.exceptions import URLDecodeError
from pyramid.httpexceptions import HTTPException
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import exception_view_config
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from goshop_common.web.responses import json_response

log = logging.getLogger("goshop.errors")

_View = TypeVar("_View", bound=Callable[..., Any])


def _exception_view(context: type[BaseException]) -> Callable[[_View], _View]:
    """Pyramid's ``exception_view_config(context)``, typed: it registers the
    view for config.scan and hands it back unchanged."""
    decorator: Callable[[_View], _View] = exception_view_config(context)
    return decorator


# Messages for statuses raised by the framework itself (routing, predicates).
_STATUS_MESSAGES = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    406: "not acceptable",
    409: "conflict",
    413: "request body too large",
    415: "unsupported media type",
    429: "too many requests",
    503: "service unavailable",
}


class ApiError(Exception):
    """Raised by views and services to answer with a JSON error and roll back."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class ErrorResponse(Response, Exception):
    """The envelope as a response that may also be raised (as Pyramid's own
    HTTP exceptions may): Cornice raises what an error handler returns."""


def error_response(
    status: int,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> ErrorResponse:
    """The envelope as a response. Returning it (rather than raising) lets the
    request transaction commit, which the views use when a refusal must still
    write something (a failed-login count, a revoked session family)."""
    body: dict[str, object] = {"error": message}
    if details:
        body["details"] = details
    response: ErrorResponse = json_response(body, status, headers, response_class=ErrorResponse)
    return response


@_exception_view(ApiError)
def api_error_view(exc: ApiError, request: Request) -> Response:
    return error_response(exc.status, exc.message, headers=exc.headers)


@_exception_view(ErrorResponse)
def raised_error_response_view(exc: ErrorResponse, request: Request) -> Response:
    return exc


@_exception_view(HTTPException)
def http_exception_view(exc: HTTPException, request: Request) -> Response:
    status = exc.code or 500
    if status < 400:  # redirects and the like pass through untouched
        return exc
    message = _STATUS_MESSAGES.get(status, (exc.title or "error").lower())
    headers = {}
    if status == 405 and exc.headers.get("Allow"):
        headers["Allow"] = exc.headers["Allow"]
    return error_response(status, message, headers=headers)


# SQLSTATE classes that mean "the database cannot serve now; try again":
# 08 connection exception, 53 insufficient resources (too many connections),
# 57 operator intervention (admin shutdown, crash shutdown, "the database
# system is starting up / shutting down", statement timeout).
_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57"})
# Single codes of the same kind: a lock or serialization conflict the client
# may retry as it stands.
_UNAVAILABLE_CODES = frozenset({"55P03", "40001", "40P01"})


def database_unavailable(exc: BaseException | None) -> bool:
    """True when ``exc`` says the database is away or overloaded, not that the
    request or the code is wrong. Decided by exception type and SQLSTATE,
    never by message text (which changes with the server's version and locale)."""
    if isinstance(exc, (PoolTimeoutError, DisconnectionError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    if not isinstance(exc, psycopg2.Error):
        return False
    code = exc.pgcode
    if code is None:
        # No SQLSTATE: the failure happened on the client's side of the wire
        # (refused, reset, timed out, closed under us).
        return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))
    return code[:2] in _UNAVAILABLE_CLASSES or code in _UNAVAILABLE_CODES


def _url_is_utf8(environ: dict[str, Any]) -> bool:
    for key in ("PATH_INFO", "QUERY_STRING"):
        try:
            # WSGI carries them as latin-1 text; the query stays percent-encoded.
            raw = environ.get(key, "").encode("latin-1")
            if key == "QUERY_STRING":
                raw = unquote_to_bytes(raw.replace(b"+", b" "))
            raw.decode("utf-8")
        except UnicodeError:
            return False
    return True


@_exception_view(URLDecodeError)
@_exception_view(UnicodeDecodeError)
def undecodable_url_view(exc: UnicodeDecodeError, request: Request) -> Response:
    # A percent-encoded path or query that is not UTF-8 (%FF, an encoded lone
    # surrogate): the client's mistake, answered without a traceback. WebOb
    # raises a plain UnicodeDecodeError for the query, so any other decoding
    # failure is still a bug, logged as one.
    if isinstance(exc, URLDecodeError) or not _url_is_utf8(request.environ):
        return error_response(400, "invalid url encoding")
    return unexpected_error_view(exc, request)


@_exception_view(DBAPIError)
@_exception_view(PoolTimeoutError)
@_exception_view(DisconnectionError)
@_exception_view(psycopg2.Error)
def database_error_view(exc: Exception, request: Request) -> Response:
    # Connection refused, server restarting, connection lost mid-request, pool
    # exhausted: the client may retry, which a 500 would not tell it.
    if not database_unavailable(exc):
        return unexpected_error_view(exc, request)
    log.error(
        "database unavailable",
        extra={"request_id": getattr(request, "request_id", None), "error": exc.__class__.__name__},
    )
    return error_response(503, "service unavailable", headers={"Retry-After": "1"})


@_exception_view(Exception)
def unexpected_error_view(exc: Exception, request: Request) -> Response:
    log.exception("unhandled error", extra={"request_id": getattr(request, "request_id", None)})
    return error_response(500, "internal error")


def includeme(config: Configurator) -> None:
    config.scan(__name__)
