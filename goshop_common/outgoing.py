"""goshop's one way to call another HTTP service: ``fetch``, over urllib.

urllib is the standard library's, and what PyJWT's ``PyJWKClient`` fetches
users' JWKS with, so one client serves every simple call (the JWKS, Ollama).
The gateway's forwarding is the one exception, for its measured speed:
docs/adr/0001-gateway-upstream-client.md.

``fetch`` never follows a redirect (each caller names the exact URL it
means) and reads at most ``max_bytes`` of an answer. It raises
``urllib.error.HTTPError`` for a status of 300 or more (its body closed,
never read), ``UnexpectedAnswer`` for another 2xx than 200 or an answer past
``max_bytes`` (``TooLarge``), and otherwise what urllib raises: ``URLError`` (refused,
unresolved, a connect timeout), ``TimeoutError`` (a read timeout),
``OSError`` (a reset) or ``http.client.HTTPException`` (an answer that is not
HTTP).
"""

from __future__ import annotations

import email.message
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import IO


class UnexpectedAnswer(Exception):
    """A 2xx answer other than 200 (``status``), or one longer than the caller
    reads (``TooLarge``)."""

    def __init__(self, message: str, status: int = 200):
        super().__init__(message)
        self.status = status


class TooLarge(UnexpectedAnswer):
    """An answer longer than the caller reads."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: email.message.Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None  # urllib then raises HTTPError with the 3xx


_OPENER = urllib.request.build_opener(_NoRedirects())
# Never through HTTP(S)_PROXY: for a service beside the shop whose requests
# must not pass through a proxy (Ollama gets an order's timeline).
_DIRECT_OPENER = urllib.request.build_opener(_NoRedirects(), urllib.request.ProxyHandler({}))


def check_url(url: str, what: str) -> str:
    """``url`` when it is http(s) with a host; ValueError naming ``what`` otherwise
    (urllib would also open file:, ftp: and data: URLs)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an http(s) URL, got {url!r}")
    return url


def fetch(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    direct: bool = False,
) -> bytes:
    """The body of a 200 answer to a GET (a POST with ``data``) of ``url``.

    ``timeout`` bounds the connect and each read. ``direct``: never through a
    proxy the environment names."""
    request = urllib.request.Request(check_url(url, "URL"), data=data, headers=dict(headers or {}))  # noqa: S310 (scheme checked)
    opener = _DIRECT_OPENER if direct else _OPENER
    try:
        with opener.open(request, timeout=timeout) as response:
            if response.status != 200:
                raise UnexpectedAnswer(f"HTTP status {response.status}", response.status)
            body: bytes = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        exc.close()  # the error's body is never read, let alone logged
        raise
    if len(body) > max_bytes:
        raise TooLarge(f"answer larger than {max_bytes} bytes")
    return body
