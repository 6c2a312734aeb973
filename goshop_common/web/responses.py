"""The one way a view builds a JSON response itself, when returning a dict
(rendered as JSON with the view's default status) is not enough: another
status, headers of its own, or the error envelope (goshop_common.web.errors)."""

from __future__ import annotations

from pyramid.response import Response


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None, *, response_class: type[Response] = Response
) -> Response:
    """``body`` as ``application/json`` (UTF-8) with ``status`` and ``headers``.
    ``response_class`` lets the error envelope be a response that may be raised."""
    response = response_class(json_body=body, status=status, charset="utf-8")
    response.content_type = "application/json"
    response.headers.update(headers or {})
    return response
