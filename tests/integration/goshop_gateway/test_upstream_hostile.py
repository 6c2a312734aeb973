"""The gateway's upstream client against generated malformed and hostile
answers (hypothesis), from a real TCP server on 127.0.0.1 that sends each
answer split at generated points across reads.

Each answer is built from parts whose meaning the test knows, so it knows
what a correct HTTP/1.1 client reads of it: either that answer (status,
end-to-end headers, body), or the client's documented failure, a 502
UpstreamFailure. The property: the client gives exactly that; it never
raises anything else, never waits for bytes that will not come (a 504
would say it did: every answer here ends, or its connection closes), never
keeps a connection in its pool after a failure, and never gives a later
request bytes that came after an answer (the next request gets the
server's answer to it)."""

from __future__ import annotations

import dataclasses
import itertools
import socket
import string
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goshop_gateway.upstream import UpstreamFailure, Upstreams
from tests.integration.goshop_gateway.raw_http import RawUpstream, read_request

NEXT = b"HTTP/1.1 200 OK\r\nX-Next: 1\r\nContent-Length: 4\r\n\r\nNEXT"
# What the client bounds an answer's head to, as http.client did before it.
MAX_HEAD_BYTES = 65536
MAX_HEADER_FIELDS = 100


@dataclasses.dataclass
class Case:
    """An answer on the wire and what a correct client reads of it: ``expected``
    is (status, headers, body), or None for a 502."""

    wire: bytes
    expected: tuple[int, list[tuple[str, str]], bytes] | None
    # The server closes the connection once the answer is sent.
    close: bool
    # The answer says the connection is not kept (Connection: close, HTTP/1.0,
    # a body to the close): the pool must not hold it afterwards.
    not_kept: bool = False
    pieces: list[bytes] = dataclasses.field(default_factory=list)


class HostileUpstream(RawUpstream):
    """Answers the first request of the first connection after ``arm`` with
    the case's pieces (a short pause between two, so each is its own read),
    then, unless the case closes, every further request with NEXT; every
    other connection gets NEXT for each request."""

    def __init__(self):
        self.case: Case | None = None
        self.sent = threading.Event()
        self.lock = threading.Lock()
        super().__init__(behaviour=lambda connection: None)

    def arm(self, case: Case) -> None:
        with self.lock:
            self.case = case
            self.sent.clear()

    def _handle(self, connection: socket.socket) -> None:
        # The case is taken at accept time: the first connection after ``arm`` gets it.
        with self.lock:
            case, self.case = self.case, None
        threading.Thread(target=self._serve_case, args=(connection, case), daemon=True).start()

    def _serve_case(self, connection: socket.socket, case: Case | None) -> None:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.settimeout(5)
        with connection:
            try:
                if case is not None:
                    if not read_request(connection):
                        return
                    for index, piece in enumerate(case.pieces):
                        if index:
                            time.sleep(0.002)
                        connection.sendall(piece)
                    self.sent.set()
                    if case.close:
                        return
                while read_request(connection):
                    connection.sendall(NEXT)
            except OSError:
                pass  # the client closed first: its right after a bad answer
            finally:
                if case is not None:
                    self.sent.set()


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    server = HostileUpstream()
    yield server
    server.close()


# --- the answers --------------------------------------------------------------

FIELD_NAME = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=10).map(lambda s: "X-" + s)
FIELD_VALUE = st.text(string.ascii_letters + string.digits + " !#$%&'*+-.^_`|~:;,/=?@()[]{}<>\"\\", max_size=30).map(
    str.strip
)
HEADERS = st.lists(st.tuples(FIELD_NAME, FIELD_VALUE), max_size=6)
STATUS = st.sampled_from([200, 201, 202, 203, 206, 299, 301, 400, 404, 409, 422, 500, 502, 503, 599])
REASON = st.sampled_from(["OK", "", "Whatever It Is"])
SMALL_BODY = st.binary(max_size=200)
# Past one read (64 KiB) of the client, in a pattern whose offsets show.
LARGE_BODY = st.integers(65_000, 300_000).map(lambda n: (b"0123456789abcdef" * (n // 16 + 1))[:n])
BODY = st.one_of(SMALL_BODY, SMALL_BODY, LARGE_BODY)
INFORMATIONAL = st.lists(
    st.sampled_from(
        [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"]
    ),
    max_size=2,
)


def _head(status_line: bytes, fields: list[tuple[str, str]]) -> bytes:
    return status_line + b"\r\n" + b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in fields) + b"\r\n"


def _chunked(body: bytes, sizes: list[int], extension: bool, trailers: list[tuple[str, str]]) -> bytes:
    out, offset = [], 0
    for size in sizes:
        piece = body[offset : offset + size]
        if not piece:
            break
        out.append(f"{len(piece):x}{';ext=1' if extension else ''}\r\n".encode() + piece + b"\r\n")
        offset += len(piece)
    if offset < len(body):
        rest = body[offset:]
        out.append(f"{len(rest):x}\r\n".encode() + rest + b"\r\n")
    out.append(b"0\r\n" + b"".join(f"{n}: {v}\r\n".encode() for n, v in trailers) + b"\r\n")
    return b"".join(out)


@st.composite
def well_formed(draw):
    """(case, parts): a correct answer, and what the hostile ones change of it."""
    status, reason = draw(STATUS), draw(REASON)
    fields = draw(HEADERS)
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    body = draw(BODY)
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
    connection_close = draw(st.booleans()) and framing != "close"
    framing_fields: list[tuple[str, str]] = []
    if framing == "length":
        framing_fields.append(("Content-Length", str(len(body))))
        payload = body
    elif framing == "chunked":
        version = "HTTP/1.1"  # HTTP/1.0 has no chunks
        framing_fields.append(("Transfer-Encoding", "chunked"))
        sizes = draw(st.lists(st.integers(1, 70_000), max_size=4))
        trailers = draw(st.lists(st.tuples(FIELD_NAME, FIELD_VALUE), max_size=2))
        payload = _chunked(body, sizes, draw(st.booleans()), trailers)
    else:
        payload = body
    if version == "HTTP/1.0" and framing == "length" and not connection_close and draw(st.booleans()):
        framing_fields.append(("Connection", "keep-alive"))
        keeps = True
    else:
        keeps = version == "HTTP/1.1" and not connection_close and framing != "close"
    if connection_close:
        framing_fields.append(("Connection", "close"))
    # The framing fields among the others, anywhere.
    all_fields = list(fields)
    for field in framing_fields:
        all_fields.insert(draw(st.integers(0, len(all_fields))), field)
    status_line = f"{version} {status} {reason}".rstrip(" ").encode() if reason else f"{version} {status}".encode()
    informational = b"".join(draw(INFORMATIONAL)) if version == "HTTP/1.1" else b""
    head = informational + _head(status_line, all_fields)
    case = Case(
        wire=head + payload,
        expected=(status, fields, body),
        close=not keeps,
        not_kept=not keeps,
    )
    parts = dict(status_line=status_line, fields=all_fields, framing=framing, body=body, informational=informational)
    return case, parts


def _failure(wire: bytes, close: bool = True) -> Case:
    return Case(wire=wire, expected=None, close=close)


@st.composite
def hostile_answers(draw):
    case, parts = draw(well_formed())

    def head_of(fields):
        return parts["informational"] + _head(parts["status_line"], fields)

    body, framing = parts["body"], parts["framing"]
    kind = draw(
        st.sampled_from(
            [
                "well-formed",
                "truncated",
                "content-length-and-chunked",
                "two-content-lengths",
                "content-length-short",
                "content-length-long",
                "bad-chunk-size",
                "bad-status-line",
                "oversized-head",
                "other-transfer-coding",
                "bytes-after",
            ]
        )
    )
    if kind == "well-formed":
        return kind, case
    if kind == "truncated":
        at = draw(st.integers(0, len(case.wire) - 1))
        head_length = len(case.wire) - len(body) if framing == "close" else None
        if head_length is not None and at >= head_length:
            # A body to the close is whatever came before the close.
            status, fields, _ = case.expected
            return kind, Case(case.wire[:at], (status, fields, body[: at - head_length]), close=True, not_kept=True)
        return kind, _failure(case.wire[:at])
    plain = [(n, v) for n, v in parts["fields"] if n not in ("Content-Length", "Transfer-Encoding")]
    if kind == "content-length-and-chunked":
        fields = [*plain, ("Content-Length", str(len(body))), ("Transfer-Encoding", "chunked")]
        if draw(st.booleans()):
            fields.reverse()
        return kind, _failure(head_of(fields) + _chunked(body, [], False, []))
    if kind == "two-content-lengths":
        other = len(body) + draw(st.integers(1, 10))
        lengths = [("Content-Length", str(len(body))), ("Content-Length", str(other))]
        return kind, _failure(head_of([*plain, *draw(st.permutations(lengths))]) + body + b"x" * (other - len(body)))
    if kind == "content-length-short" and body:
        # The answer ends where its length says; the rest is not its body,
        # nor the next answer's.
        short = draw(st.integers(0, len(body) - 1))
        fields = [*plain, ("Content-Length", str(short))]
        status, expected_fields, _ = case.expected
        return kind, Case(head_of(fields) + body, (status, expected_fields, body[:short]), close=True)
    if kind in ("content-length-long", "content-length-short"):
        fields = [*plain, ("Content-Length", str(len(body) + draw(st.integers(1, 1000))))]
        return kind, _failure(head_of(fields) + body)
    if kind == "bad-chunk-size":
        size = draw(st.sampled_from([b"zz", b"-1", b"0x3", b"+3", b"fffffffffffffffffffff", b"", b"3 3", b"\xff"]))
        data = body[:3] or b"abc"
        fields = [*plain, ("Transfer-Encoding", "chunked")]
        return kind, _failure(head_of(fields) + size + b"\r\n" + data + b"\r\n0\r\n\r\n")
    if kind == "bad-status-line":
        line = draw(
            st.sampled_from(
                [
                    b"HTTX/1.1 200 OK",
                    b"HTTP/1.1 20 OK",
                    b"HTTP/1.1 2000 OK",
                    b"HTTP/1.1 000 Zero",
                    b"HTTP/1.1 099 Below",
                    b"HTTP/1.1 600 Beyond",
                    b"HTTP/1.1 999 Beyond",
                    b"HTTP/2.0 200 OK",
                    b"HTTP/3 200 OK",
                    b"HTTP/0.9 200 OK",
                    b"RTSP/1.0 200 OK",
                    b"ICE/1.0 200 OK",
                    b"SSH-2.0-OpenSSH_9.6",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                    b"HTTP/1.1 200 OK\nX-Bare: lf",
                ]
            )
        )
        fields = [*plain, ("Content-Length", str(len(body)))]
        return kind, _failure(_head(line, fields) + body)
    if kind == "oversized-head":
        if draw(st.booleans()):
            fields = [*plain, ("X-Big", "v" * draw(st.integers(MAX_HEAD_BYTES, 3 * MAX_HEAD_BYTES)))]
        else:
            fields = plain + [(f"X-F{i}", "1") for i in range(draw(st.integers(MAX_HEADER_FIELDS + 1, 2000)))]
        return kind, _failure(head_of([*fields, ("Content-Length", str(len(body)))]) + body)
    if kind == "other-transfer-coding":
        coding = draw(
            st.sampled_from(
                [
                    ["gzip, chunked"],
                    ["chunked, gzip"],
                    ["gzip"],
                    ["identity"],
                    ["chunked, chunked"],
                    ["gzip", "chunked"],
                ]
            )
        )
        fields = [*plain, *(("Transfer-Encoding", c) for c in coding)]
        payload = _chunked(body, [], False, []) if coding[-1].endswith("chunked") else body
        return kind, _failure(head_of(fields) + payload)
    # bytes-after: a second answer, or garbage, after a framed one.
    if framing == "close":
        return kind, case
    surplus = draw(st.sampled_from([NEXT.replace(b"NEXT", b"EVIL"), b"garbage\r\n", b"HTTP/1.1 200 OK\r\n"]))
    status, fields, _ = case.expected
    return kind, Case(case.wire + surplus, case.expected, close=True)


@st.composite
def split_cases(draw):
    kind, case = draw(hostile_answers())
    wire = case.wire
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(wire) - 1)), max_size=5)))) if len(wire) > 1 else []
    bounds = [0, *cuts, len(wire)]
    case.pieces = [wire[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    return kind, case


@settings(
    max_examples=200,
    deadline=3000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(split_cases())
def test_the_client_reads_a_hostile_answer_right_or_fails_with_a_502(hostile, kind_and_case):
    kind, case = kind_and_case
    hostile.arm(case)
    upstreams = Upstreams({"users": hostile.url}, connect_timeout=1, read_timeout=1, public_url="https://shop.example")
    pool = upstreams.pools["users"]
    try:
        try:
            response = upstreams.request("users", "GET", "/x", [], None)
        except UpstreamFailure as failure:  # anything else fails the test as it is
            response, status = None, failure.status
        if response is None:
            assert (case.expected, status) == (None, 502), (kind, "a failure where an answer is readable", status)
            assert pool.idle == [], "a connection kept after a failure"
        else:
            assert case.expected is not None, (kind, "read an answer that is not one", response)
            assert (response.status, response.headers, response.body) == case.expected, kind
            if case.not_kept:
                assert pool.idle == [], "a connection kept that its answer said to close"
        # Every byte of the answer has left the server: whatever followed the
        # answer is on the kept connection, if any, before the next request.
        assert hostile.sent.wait(5)
        after = upstreams.request("users", "GET", "/next", [], None)
        assert (after.status, after.headers, after.body) == (200, [("X-Next", "1")], b"NEXT"), kind
    finally:
        upstreams.close()


# --- what the property (and probing llhttp for its strategies) found, one each ---

FOUND = {
    # llhttp takes any three digits, and HTTP/2.0, RTSP/1.0 and ICE/1.0 status lines.
    "status 000": _failure(b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n"),
    "status 099": _failure(b"HTTP/1.1 099 Below\r\nContent-Length: 0\r\n\r\n"),
    "status 600": _failure(b"HTTP/1.1 600 Beyond\r\nContent-Length: 0\r\n\r\n"),
    "HTTP/2.0": _failure(b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    "RTSP/1.0": _failure(b"RTSP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    # A transfer coding the gateway does not decode: the body reached the
    # client still gzipped, its Transfer-Encoding dropped.
    "gzip, chunked": _failure(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    # No bound on the head, where http.client had one.
    "101 fields": _failure(b"HTTP/1.1 200 OK\r\n" + b"X-F: 1\r\n" * 101 + b"Content-Length: 0\r\n\r\n"),
    "a 70 KB field": _failure(b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n"),
    # Trailer fields were merged into the header fields.
    "trailers": Case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nSet-Cookie: t=1\r\n\r\n",
        (200, [], b"abc"),
        close=True,
    ),
}


@pytest.mark.parametrize("case", FOUND.values(), ids=FOUND.keys())
def test_what_the_property_found(hostile, case):
    case.pieces = [case.wire]
    hostile.arm(case)
    upstreams = Upstreams({"users": hostile.url}, connect_timeout=1, read_timeout=1, public_url="https://shop.example")
    try:
        if case.expected is None:
            with pytest.raises(UpstreamFailure) as failure:
                upstreams.request("users", "GET", "/x", [], None)
            assert failure.value.status == 502
        else:
            response = upstreams.request("users", "GET", "/x", [], None)
            assert (response.status, response.headers, response.body) == case.expected
    finally:
        upstreams.close()
