"""Refuse request bodies over ``max_body_bytes`` with a JSON 413, before any
view reads them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from goshop_common.web.errors import error_response

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyramid.config import Configurator
    from pyramid.registry import Registry
    from pyramid.request import Request
    from pyramid.response import Response

_TOO_LARGE = "request body too large"


def body_limit_tween_factory(
    handler: Callable[[Request], Response], registry: Registry
) -> Callable[[Request], Response]:
    """The tween that answers 413 to a body over the limit, declared or read."""
    limit = registry.goshop_settings.max_body_bytes

    def body_limit_tween(request: Request) -> Response:
        length = request.content_length
        # A declared length is refused before a byte of the body is read.
        if length is not None and length > limit:
            return error_response(413, _TOO_LARGE)
        if length is None and request.is_body_readable:
            # Chunked upload: read at most one byte past the limit.
            body = request.body_file.read(limit + 1)
            if len(body) > limit:
                return error_response(413, _TOO_LARGE)
            # Put back what was read: the view reads the body as sent.
            request.body = body
        return handler(request)

    return body_limit_tween


def includeme(config: Configurator) -> None:
    config.add_tween("goshop_common.web.bodylimit.body_limit_tween_factory")
