"""One JSON log line per request, and the request id that ties lines together.

A client's ``X-Request-ID`` is kept when it is a sane token, otherwise a new
one is made; either way it is echoed on the response. Only the path is logged,
never the query string, headers or body, so tokens and passwords stay out.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable

from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.tweens import INGRESS

log = logging.getLogger("goshop.request")

REQUEST_ID_HEADER = "X-Request-ID"
# Nothing that could split a log line or a header: no spaces, no CR or LF.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Set by goshop_common.auth.tokens once an access token is verified; absent
# for an anonymous request, whose line then has no user_id.
USER_ID_ENVIRON_KEY = "goshop.user_id"


def request_id_from(value: str | None) -> str:
    """The client's X-Request-ID when it is a sane token, else a fresh one."""
    if value and _REQUEST_ID.match(value):
        return value
    # 32 hex digits of 16 random bytes, as uuid4().hex without building a UUID.
    return os.urandom(16).hex()


def request_log_tween_factory(
    handler: Callable[[Request], Response], registry: Registry
) -> Callable[[Request], Response]:
    """The tween that gives each request its ``request.request_id``, echoes it
    on the response, and logs the request's one line once it is answered."""

    def request_log_tween(request: Request) -> Response:
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        started = time.perf_counter()
        # Kept if the handler raises: past this outermost tween, the server
        # answers the exception with a 500.
        status = 500
        try:
            response = handler(request)
            status = response.status_code
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            fields = {
                "method": request.method,
                # Not request.path: it raises on a path that is not UTF-8 (%FF),
                # which is answered with a 400 and must still be logged.
                # WSGI (PEP 3333) hands the path's bytes over as latin-1 text:
                # back to bytes, then read as UTF-8.
                "path": (request.environ.get("SCRIPT_NAME", "") + request.environ.get("PATH_INFO", ""))
                .encode("latin-1")
                .decode("utf-8", "replace"),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "request_id": request_id,
            }
            user_id = request.environ.get(USER_ID_ENVIRON_KEY)
            if user_id:
                fields["user_id"] = user_id
            log.info("request", extra=fields)

    return request_log_tween


def includeme(config: Configurator) -> None:
    # Outermost, so the logged status is the one the client got, error pages included.
    config.add_tween("goshop_common.web.requestlog.request_log_tween_factory", under=INGRESS)
