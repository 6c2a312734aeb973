"""The gateway's client for its upstreams: pooled keep-alive connections,
connect and read timeouts, and hop-by-hop headers kept out in both directions.

A plain HTTP/1.1 client over stdlib sockets whose answers are parsed by
httptools (llhttp, in C). It replaced urllib3, whose own Python and
http.client's header parsing (through the ``email`` package) were over a
quarter of the gateway's CPU under checkout load; the gateway needs none of
what they add (redirects, TLS, proxies, decoding, retries by policy).
bench/bench_upstream.py measures the two side by side.
"""

from __future__ import annotations

import dataclasses
import re
import select
import socket
import threading
from urllib.parse import urlsplit

import httptools

from goshop_common.observability import tracing

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Recomputed for the response we write, or set by the client.
RECOMPUTED = frozenset({"content-length", "host", "date", "server"})
_DROPPED = HOP_BY_HOP | RECOMPUTED
# Sent with a Content-Length even without a body, as urllib3 and http.client do.
_METHODS_EXPECTING_BODY = frozenset({"POST", "PUT", "PATCH"})
# Safe to send twice (RFC 9110 9.2.2): the effect of two is the effect of one.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# What http.client refuses in a request target: no whitespace or control
# character may split the request line.
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_RECV_BYTES = 65536
# An answer's head (its status line and header fields, 1xx heads before it
# included) fits in this many bytes and fields, or the answer is refused:
# http.client, which urllib3 parsed with, refused more than 100 fields too.
MAX_HEAD_BYTES = 65536
MAX_HEADER_FIELDS = 100
# What a call can fail with: the socket's errors (timeouts, refusals, resets,
# the closes above) and an answer that is not HTTP/1.1, a 101 included (the
# gateway asks no upgrade: Upgrade is hop-by-hop).
_BROKEN = (OSError, httptools.HttpParserError, httptools.HttpParserUpgrade)


class UpstreamFailure(Exception):
    """The upstream could not answer: ``status`` is what the gateway says instead."""

    def __init__(self, upstream: str, status: int, message: str):
        super().__init__(f"{upstream}: {message}")
        self.upstream = upstream
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    # The answer to a HEAD has no body, but says the length its GET's would
    # have (RFC 9110 9.3.2): the upstream's Content-Length, kept for the client.
    head_length: str | None = None

    @property
    def content_length(self) -> str:
        """The Content-Length the gateway's client is told."""
        return self.head_length if self.head_length is not None else str(len(self.body))


@dataclasses.dataclass(frozen=True)
class Timeout:
    """Seconds to wait for a connection, and for each read of the answer
    (between two packets, not for the whole answer)."""

    connect: float
    read: float


# The two headers WSGI keeps without an HTTP_ prefix (PEP 3333), and the
# names webob gives their HTTP_ twins (which a server never sets).
_UNPREFIXED = {
    "CONTENT_TYPE": "Content-Type",
    "CONTENT_LENGTH": "Content-Length",
    "HTTP_CONTENT_TYPE": "Content_Type",
    "HTTP_CONTENT_LENGTH": "Content_Length",
}


def request_headers(environ: dict) -> list[tuple[str, str]]:
    """A WSGI request's headers as (name, value) pairs, named as webob's
    ``request.headers`` names them (``HTTP_X_REQUEST_ID`` is
    ``X-Request-Id``), without its per-key view of the whole environ."""
    items = []
    for key, value in environ.items():
        if key in _UNPREFIXED:
            items.append((_UNPREFIXED[key], value))
        elif key.startswith("HTTP_"):
            items.append((key[5:].replace("_", "-").title(), value))
    return items


def end_to_end_items(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(name, value) pairs without the hop-by-hop ones, including any the
    Connection header names; in their order, repeated names kept apart."""
    named = set()
    for name, value in items:
        if name.lower() == "connection":
            named |= {token.strip().lower() for token in value.split(",")}
    dropped = _DROPPED | named if named else _DROPPED
    return [(name, value) for name, value in items if name.lower() not in dropped]


class _ClosedBeforeAnswer(ConnectionError):
    """The upstream closed (or reset) the connection before any byte of an answer."""


class _ClosedMidAnswer(ConnectionError):
    """The upstream closed the connection part way through an answer."""


class _Connection:
    """One socket to an upstream and the parser of its answers. It is also
    the parser's protocol: httptools calls the ``on_*`` methods, which
    collect the answer in hand."""

    __slots__ = (
        "body",
        "complete",
        "head",
        "head_read",
        "headers",
        "headers_done",
        "parser",
        "read_timeout",
        "reusable",
        "sock",
    )

    def __init__(self, sock: socket.socket, read_timeout: float):
        self.sock = sock
        self.read_timeout = read_timeout
        self.parser = httptools.HttpResponseParser(self)

    def exchange(self, data: bytes, head: bool, read_timeout: float) -> UpstreamResponse:
        """Sends one request, reads its whole answer. ``reusable`` says after
        whether the connection may carry another."""
        self.head = head
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.headers_done = self.complete = False
        self.reusable = True
        self.head_read = 0
        sock = self.sock
        if read_timeout != self.read_timeout:
            sock.settimeout(read_timeout)
            self.read_timeout = read_timeout
        received = False
        try:
            sock.sendall(data)
            while not self.complete:
                chunk = sock.recv(_RECV_BYTES)
                if not chunk:
                    if not received:
                        raise _ClosedBeforeAnswer("closed before answering")
                    if not (self.headers_done and self._ends_at_close()):
                        raise _ClosedMidAnswer("closed mid-answer")
                    self.complete, self.reusable = True, False
                    break
                if not received:
                    received = True
                    # llhttp also takes RTSP/ and ICE/ answers.
                    if not chunk.startswith(b"HTTP/"[: len(chunk)]):
                        raise httptools.HttpParserError("not an HTTP answer")
                if self.headers_done:
                    self._feed(chunk)
                else:
                    self._feed_head(chunk)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            if received:
                raise _ClosedMidAnswer(str(exc)) from None
            raise _ClosedBeforeAnswer(str(exc)) from None
        parser = self.parser
        head_length = None
        if head:
            head_length = next((v.strip() for n, v in self.headers if n.lower() == "content-length"), None)
            # llhttp cannot be told an answer to HEAD has no body: it would
            # wait for the body its Content-Length announces. A new parser
            # for the next answer; none at all after an upstream that sent a
            # body anyway, whose framing is not to be trusted.
            self.parser = httptools.HttpResponseParser(self)
            if self.body:
                self.reusable = False
                self.body = []
        return UpstreamResponse(
            parser.get_status_code(), end_to_end_items(self.headers), b"".join(self.body), head_length
        )

    def _feed_head(self, chunk: bytes) -> None:
        """``_feed`` while the head is incomplete: no further than
        MAX_HEAD_BYTES into the answer before the head is complete."""
        room = MAX_HEAD_BYTES - self.head_read
        self.head_read += len(chunk)
        if len(chunk) <= room:
            self._feed(chunk)
            return
        self._feed(chunk[:room])
        if not self.headers_done:
            raise httptools.HttpParserError(f"an answer's head longer than {MAX_HEAD_BYTES} bytes")
        self._feed(chunk[room:])

    def _feed(self, chunk: bytes) -> None:
        try:
            self.parser.feed_data(chunk)
        except httptools.HttpParserError:
            # Bytes after a whole answer spoil the connection, not the answer.
            if not self.complete:
                raise
            self.reusable = False

    def _ends_at_close(self) -> bool:
        """The answer has neither a Content-Length nor chunks: its body ends
        where the connection does (RFC 9112 6.3, the last rule)."""
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == "content-length" or (lowered == "transfer-encoding" and "chunked" in value.lower()):
                return False
        return True

    # httptools' protocol --------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            # Bytes after the answer answer nothing this client asked: the
            # parse stops here (feed_data raises), the connection is not kept.
            raise httptools.HttpParserError("bytes after the answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_done:
            # A trailer field, after the chunks: never merged into the header
            # fields (RFC 9110 6.5.1), where it could set a cookie or a Location.
            return
        if len(self.headers) == MAX_HEADER_FIELDS:
            raise httptools.HttpParserError(f"an answer with more than {MAX_HEADER_FIELDS} header fields")
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        parser = self.parser
        # llhttp takes any three digits and any HTTP/d.d.
        if not 100 <= parser.get_status_code() <= 599 or parser.get_http_version() not in ("1.1", "1.0"):
            raise httptools.HttpParserError("not an HTTP/1.1 status line")
        # The gateway asks for no transfer coding (it sends no TE) and decodes
        # none but chunked: a body in another would reach the client encoded,
        # with its Transfer-Encoding dropped as hop-by-hop.
        codings = [
            coding.strip().lower()
            for name, value in self.headers
            if len(name) == 17 and name.lower() == "transfer-encoding"
            for coding in value.split(",")
        ]
        if codings and codings != ["chunked"]:
            raise httptools.HttpParserError(f"a transfer coding other than chunked: {codings}")
        # Asked now: llhttp forgets it once the answer is complete. False for
        # Connection: close, HTTP/1.0 without keep-alive, a body to the close.
        if not parser.should_keep_alive():
            self.reusable = False
        if self.head:
            self.complete = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:
            # Informational (100 Continue): the answer follows it.
            self.headers = []
            self.headers_done = False
        else:
            self.complete = True

    def dropped(self) -> bool:
        """Whether this idle connection is readable, without waiting: poll, not
        select, which refuses a descriptor of 1024 or more (ValueError), as
        the gateway has once its open-files limit is raised to take
        GOSHOP_HTTP_CONNECTION_LIMIT connections (goshop_common.web.slowclients).
        A hang-up or an error counts as readable."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        self.sock.close()


class _Upstream:
    """One upstream: its address, its URL's path prefix, and its idle
    connections. Taken last in, first out: the most recently used is the
    least likely to have been closed by the upstream for idling."""

    def __init__(self, url: str, pool_size: int, public_url: str):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an upstream URL is http://host[:port][/prefix], not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc.rpartition("@")[2]
        self.base = f"http://{self.host_header}"
        self.prefix = parts.path.rstrip("/")
        self.pool_size = pool_size
        self.public_url = public_url
        self.idle: list[_Connection] = []
        self.lock = threading.Lock()

    def public_location(self, value: str) -> str:
        """A Location this upstream sent, as the gateway's client can follow
        it: under the gateway's public URL, never under the Host a client
        sent (webob would make a path absolute with that one). webob writes
        the upstream's Location absolute with the Host the gateway sent: one
        under the upstream's own URL, or a bare path, is moved under the
        public URL; any other (another site) is left as it is."""
        origin = self.base + self.prefix
        if value.startswith(origin) and value[len(origin) : len(origin) + 1] in ("/", "?", "#", ""):
            return self.public_url + (value[len(origin) :] or "/")
        if value.startswith("/") and not value.startswith("//"):
            return self.public_url + value
        return value

    def _public(self, response: UpstreamResponse) -> UpstreamResponse:
        """``response`` with its Location, if any, as ``public_location`` says."""
        for index, (name, value) in enumerate(response.headers):
            if name.lower() == "location":
                response.headers[index] = (name, self.public_location(value))
        return response

    def request(self, method: str, path: str, headers, body: bytes | None, timeout: Timeout) -> UpstreamResponse:
        data = self._encode(method, path, headers, body)
        head = method == "HEAD"
        connection = self._idle()
        if connection is not None:
            try:
                return self._public(self._exchange(connection, data, head, timeout.read))
            except _ClosedBeforeAnswer:
                # The upstream closed the connection as the request went out
                # (its idle timeout, a restart): it may or may not have read
                # the request. Sent again, once, on a new connection only when
                # doing it twice is harmless (RFC 9110 9.2.2); a POST is the
                # client's to retry, with its Idempotency-Key. Never after a
                # byte of an answer, nor after a read timeout.
                if method not in _IDEMPOTENT:
                    raise
        return self._public(self._exchange(self._connect(timeout), data, head, timeout.read))

    def _idle(self) -> _Connection | None:
        """The most recent idle connection the upstream has not closed, if any:
        one that is readable while idle has an end of stream (or bytes
        nobody asked for) waiting, and is dropped, as urllib3 does."""
        while True:
            with self.lock:
                connection = self.idle.pop() if self.idle else None
            if connection is None or not connection.dropped():
                return connection
            connection.close()

    def _exchange(self, connection: _Connection, data: bytes, head: bool, read_timeout: float) -> UpstreamResponse:
        try:
            response = connection.exchange(data, head, read_timeout)
        except BaseException:
            connection.close()
            raise
        if connection.reusable:
            with self.lock:
                if len(self.idle) < self.pool_size:
                    self.idle.append(connection)
                    return response
        connection.close()
        return response

    def _connect(self, timeout: Timeout) -> _Connection:
        address = (self.host, self.port)
        try:
            sock = socket.create_connection(address, timeout.connect)
        except OSError:
            # A failed connect never reached the upstream, so trying once more
            # is safe even for a POST; nothing else is retried.
            sock = socket.create_connection(address, timeout.connect)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout.read)
        return _Connection(sock, timeout.read)

    def _encode(self, method: str, path: str, headers, body: bytes | None) -> bytes:
        target = self.prefix + path
        if _BAD_TARGET.search(target):
            raise ValueError(f"a request target with whitespace or a control character: {target!r}")
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers]
        if body or method in _METHODS_EXPECTING_BODY:
            lines.append(f"Content-Length: {len(body) if body else 0}\r\n")
        text = "".join(lines)
        # One line feed per line written: a CR or LF inside a name or value
        # would start a header (or a request) of its sender's choosing.
        if text.count("\n") != len(lines) + 1 or text.count("\r") != len(lines) + 1:
            raise ValueError("a request header with a line break")
        data = (text + "\r\n").encode("latin-1")
        return data + body if body else data

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for connection in idle:
            connection.close()


def _failure(upstream: str, exc: Exception) -> UpstreamFailure:
    # A connect or a read that timed out; anything else (refused, reset,
    # closed early, an answer that is not HTTP) is the upstream unavailable.
    if isinstance(exc, TimeoutError):
        return UpstreamFailure(upstream, 504, "upstream timeout")
    return UpstreamFailure(upstream, 502, "upstream unavailable")


class Upstreams:
    def __init__(
        self,
        urls: dict[str, str],
        connect_timeout: float,
        read_timeout: float,
        pool_size: int = 16,
        *,
        public_url: str,
    ):
        """``public_url``: the gateway's own, under which every Location of
        an upstream's is given to the client (``public_location``)."""
        self.urls = {name: url.rstrip("/") for name, url in urls.items()}
        self.timeout = Timeout(connect=connect_timeout, read=read_timeout)
        # Each upstream's path prefix, if its URL has one, goes before every path.
        self.pools = {name: _Upstream(url, pool_size, public_url) for name, url in self.urls.items()}

    def request(
        self,
        upstream: str,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeout: Timeout | None = None,
    ) -> UpstreamResponse:
        pool = self.pools[upstream]
        if tracing.enabled():
            return self._traced(pool, upstream, method, path, headers, body, timeout or self.timeout)
        try:
            return pool.request(method, path, headers, body, timeout or self.timeout)
        except _BROKEN as exc:
            raise _failure(upstream, exc) from None

    def _traced(self, pool: _Upstream, upstream: str, method: str, path: str, headers, body, timeout):
        """``request`` in a client span, its context sent along (W3C
        ``traceparent``): what the urllib3 instrumentation did, with the
        stable HTTP conventions' names."""
        # Imported here: an untraced gateway never loads the propagators.
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind, Status, StatusCode

        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "server.address": pool.host,
            "server.port": pool.port,
            "url.full": pool.base + pool.prefix + path,
        }
        with tracing.tracer().start_as_current_span(
            method, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            try:
                response = pool.request(method, path, [*headers, *carrier.items()], body, timeout)
            except _BROKEN as exc:
                failure = _failure(upstream, exc)
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, failure.message))
                raise failure from None
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 400:
                span.set_attribute("error.type", str(response.status))
                span.set_status(Status(StatusCode.ERROR))
            return response

    def close(self) -> None:
        """Drop every kept-alive connection; the next request opens a new one."""
        for pool in self.pools.values():
            pool.close()
