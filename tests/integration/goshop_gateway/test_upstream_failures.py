"""The gateway's answers when an upstream misbehaves on the wire, and its
upstream client's HTTP/1.1 (framing, its pool of kept-alive connections,
what it retries and what it never does): real sockets, a hand-written
upstream for each odd case, the gateway under WebTest."""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest
import webtest

from goshop_gateway import make_app
from goshop_gateway.upstream import Timeout, UpstreamFailure, Upstreams
from tests.integration.goshop_gateway.raw_http import RawUpstream, read_request
from tests.support import served, with_settings

# The gateway's public URL, under which an upstream's Location is given.
PUBLIC_URL = "https://shop.example"

LOGIN = {"email": "someone@example.com", "password": "long enough password"}


def drops_the_connection(connection):
    read_request(connection)


def answers_too_late(connection):
    read_request(connection)
    time.sleep(1.5)


def answers_ok_and_keeps_alive(connection):
    while read_request(connection):
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


@pytest.fixture
def upstream() -> Iterator[Callable[[Callable], RawUpstream]]:
    servers = []

    def start(behaviour):
        servers.append(RawUpstream(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def gateway(service_settings, users_url, **changes) -> webtest.TestApp:
    return webtest.TestApp(make_app(with_settings(service_settings, users_url=users_url, **changes)))


def test_an_upstream_that_closes_the_connection_without_answering_is_a_502(service_settings, upstream):
    users = upstream(drops_the_connection)
    client = gateway(service_settings, users.url)
    # A POST is never retried once sent; a GET is, once, then given up on.
    for response in (
        client.post_json("/v1/users/login", LOGIN, status=502),
        client.get("/.well-known/jwks.json", status=502),
    ):
        assert response.json == {"error": "upstream unavailable"}


def test_a_post_the_upstream_answers_after_the_read_timeout_is_a_504(service_settings, upstream):
    users = upstream(answers_too_late)
    client = gateway(service_settings, users.url, upstream_read_timeout=0.5)
    started = time.monotonic()
    response = client.post_json("/v1/users/login", LOGIN, status=504)
    assert response.json == {"error": "upstream timeout"}
    assert time.monotonic() - started < 1.5
    assert users.connections == 1, "a POST that reached the upstream is not sent again"


def test_closing_the_upstreams_drops_their_kept_alive_connections(upstream):
    users = upstream(answers_ok_and_keeps_alive)
    upstreams = Upstreams({"users": users.url}, connect_timeout=1, read_timeout=1, public_url=PUBLIC_URL)
    for _ in range(2):
        assert upstreams.request("users", "GET", "/ready", [], None).status == 200
    assert users.connections == 1  # kept alive between the two requests
    upstreams.close()
    assert upstreams.request("users", "GET", "/ready", [], None).status == 200
    assert users.connections == 2


def test_an_upstream_url_with_a_path_prefixes_every_request(upstream):
    seen = []

    def records_the_request_line(connection):
        head = connection.recv(65536)
        seen.append(head.split(b"\r\n", 1)[0])
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    users = upstream(records_the_request_line)
    upstreams = Upstreams({"users": users.url + "/base/"}, connect_timeout=1, read_timeout=1, public_url=PUBLIC_URL)
    assert upstreams.request("users", "GET", "/v1/users/me?x=1", [], None).status == 200
    assert seen == [b"GET /base/v1/users/me?x=1 HTTP/1.1"]


# --- the client on the wire: framing, keep-alive, retries, timeouts ---------------


def answers(*responses: bytes, then_close: bool = False):
    """A behaviour: each request on a connection gets the next of ``responses``
    (the last one again once they run out); ``then_close`` ends the
    connection after the last."""

    def behaviour(connection):
        for index in itertools.count():
            if not read_request(connection):
                return
            connection.sendall(responses[min(index, len(responses) - 1)])
            if then_close and index >= len(responses) - 1:
                return

    return behaviour


def reset(connection: socket.socket) -> None:
    """Close with a TCP RST, not a FIN (SO_LINGER on, zero seconds)."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def client(url: str, **timeouts) -> Upstreams:
    return Upstreams({"users": url}, **{"connect_timeout": 1, "read_timeout": 1, **timeouts}, public_url=PUBLIC_URL)


def test_a_chunked_answer_is_read_whole_and_its_connection_kept(upstream):
    users = upstream(
        answers(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
    )
    upstreams = client(users.url)
    for _ in range(3):
        response = upstreams.request("users", "GET", "/x", [], None)
        assert (response.status, response.headers, response.body) == (200, [("X-A", "1")], b"abcdefg")
    assert users.connections == 1


def test_an_answer_with_connection_close_is_read_and_its_connection_not_kept(upstream):
    users = upstream(answers(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"))
    upstreams = client(users.url)
    for _ in range(2):
        assert upstreams.request("users", "GET", "/x", [], None).body == b"ok"
    assert users.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\n\r\nok",  # its body ends where the connection does
        b"HTTP/1.1 200 OK\r\n\r\nok",
    ],
)
def test_an_answer_without_keep_alive_is_read_and_its_connection_not_kept(upstream, answer):
    users = upstream(answers(answer, then_close=True))
    upstreams = client(users.url)
    for _ in range(2):
        assert upstreams.request("users", "GET", "/x", [], None).body == b"ok"
    assert users.connections == 2


def test_an_http_1_0_answer_that_asks_for_keep_alive_keeps_its_connection(upstream):
    users = upstream(answers(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"))
    upstreams = client(users.url)
    for _ in range(2):
        assert upstreams.request("users", "GET", "/x", [], None).body == b"ok"
    assert users.connections == 1


def test_repeated_response_headers_stay_apart_in_their_order_without_hop_by_hop_ones(upstream):
    users = upstream(
        answers(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nConnection: X-Internal\r\nX-Internal: secret\r\n"
            b"Keep-Alive: timeout=5\r\nContent-Type: text/plain\r\nSet-Cookie: b=2\r\nDate: today\r\n"
            b"Server: waitress\r\nContent-Length: 2\r\n\r\nok"
        )
    )
    response = client(users.url).request("users", "GET", "/x", [], None)
    assert response.headers == [("Set-Cookie", "a=1"), ("Content-Type", "text/plain"), ("Set-Cookie", "b=2")]


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
        ("HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"),
    ],
)
def test_answers_to_head_and_204_and_304_have_no_body_and_keep_their_connection(upstream, method, answer):
    users = upstream(answers(answer, OK))
    upstreams = client(users.url)
    assert upstreams.request("users", method, "/x", [], None).body == b""
    # The next answer on the same connection is read as itself.
    assert (upstreams.request("users", "GET", "/x", [], None).body, users.connections) == (b"ok", 1)


def test_a_body_sent_to_head_anyway_is_dropped_with_its_connection(upstream):
    users = upstream(answers(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", OK))
    upstreams = client(users.url)
    assert upstreams.request("users", "HEAD", "/x", [], None).body == b""
    assert (upstreams.request("users", "GET", "/x", [], None).body, users.connections) == (b"ok", 2)


def test_an_informational_answer_is_skipped_for_the_one_after_it(upstream):
    users = upstream(answers(b"HTTP/1.1 100 Continue\r\n\r\n" + OK))
    response = client(users.url).request("users", "POST", "/x", [], b"{}")
    assert (response.status, response.body) == (200, b"ok")


def test_a_request_carries_its_host_its_headers_in_order_and_its_body_with_a_length(upstream):
    seen = []

    def records_the_request(connection):
        seen.append(connection.recv(65536))
        connection.sendall(OK)

    users = upstream(records_the_request)
    headers = [("X-B", "2"), ("X-A", "1"), ("X-A", "3")]
    client(users.url).request("users", "POST", "/v1/orders", headers, b'{"a": 1}')
    port = users.url.rsplit(":", 1)[1]
    assert seen == [
        b"POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\n"
        b'X-B: 2\r\nX-A: 1\r\nX-A: 3\r\nContent-Length: 8\r\n\r\n{"a": 1}'
    ]


def test_a_post_without_a_body_says_so_with_a_zero_length_and_a_get_says_nothing(upstream):
    seen = []

    def records_the_request(connection):
        while True:
            data = connection.recv(65536)
            if not data:
                return
            seen.append(data)
            connection.sendall(OK)

    users = upstream(records_the_request)
    upstreams = client(users.url)
    upstreams.request("users", "POST", "/x", [], None)
    upstreams.request("users", "GET", "/x", [], None)
    assert [b"Content-Length: 0\r\n" in request for request in seen] == [True, False]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/x HTTP/1.1\r\nX-Smuggled: 1\r\n\r\nGET /y", []),
        ("/x y", []),
        ("/x", [("X-A", "1\r\nX-Smuggled: 1")]),
        ("/x", [("X-A\nX-Smuggled", "1")]),
        ("/x", [("X-A", "1\rX-Smuggled: 1")]),
    ],
)
def test_a_line_break_or_space_that_would_split_the_request_is_refused_before_sending(upstream, path, headers):
    users = upstream(answers(OK))
    with pytest.raises(ValueError, match=r"whitespace or a control character|line break"):
        client(users.url).request("users", "GET", path, headers, None)
    assert users.connections == 0


@pytest.mark.parametrize("closing", [socket.socket.close, reset], ids=["closed", "reset"])
def test_an_idle_connection_the_upstream_closed_is_not_used_and_the_request_goes_on_a_new_one(upstream, closing):
    requests = []

    def answers_once_then_closes_when_idle(connection):
        read_request(connection)
        requests.append(1)
        connection.sendall(OK)
        time.sleep(0.1)  # idle, then gone, as an upstream's idle timeout does
        closing(connection)

    users = upstream(answers_once_then_closes_when_idle)
    upstreams = client(users.url)
    assert upstreams.request("users", "GET", "/x", [], None).status == 200
    time.sleep(0.3)
    assert upstreams.request("users", "POST", "/v1/users/login", [], b"{}").body == b"ok"
    assert (users.connections, len(requests)) == (2, 2)


def reads_the_second_request_and_closes(requests):
    def behaviour(connection):
        read_request(connection)
        requests.append(1)
        connection.sendall(OK)
        if read_request(connection):  # as an idle timeout may, just as a request arrives
            requests.append(1)

    return behaviour


def test_a_post_whose_kept_connection_closes_unanswered_is_a_502_and_not_sent_twice(upstream):
    requests = []
    users = upstream(reads_the_second_request_and_closes(requests))
    upstreams = client(users.url)
    assert upstreams.request("users", "GET", "/x", [], None).status == 200
    with pytest.raises(UpstreamFailure) as failure:
        upstreams.request("users", "POST", "/v1/orders", [], b"{}")
    assert failure.value.status == 502
    # The upstream may have acted on it: sending it again could make a second order.
    assert (users.connections, len(requests)) == (1, 2)


def test_a_get_whose_kept_connection_closes_unanswered_is_sent_again_on_a_new_one(upstream):
    requests = []
    users = upstream(reads_the_second_request_and_closes(requests))
    upstreams = client(users.url)
    assert upstreams.request("users", "GET", "/x", [], None).status == 200
    assert upstreams.request("users", "GET", "/y", [], None).status == 200
    assert (users.connections, len(requests)) == (2, 3)


def test_an_upstream_that_resets_mid_answer_is_a_502_and_the_request_is_not_sent_again(upstream):
    requests = []

    def answers_then_resets_mid_answer(connection):
        while read_request(connection):
            requests.append(1)
            if len(requests) == 1:
                connection.sendall(OK)
            else:
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
                time.sleep(0.1)
                reset(connection)
                return

    users = upstream(answers_then_resets_mid_answer)
    upstreams = client(users.url)
    assert upstreams.request("users", "GET", "/x", [], None).status == 200
    with pytest.raises(UpstreamFailure) as failure:
        upstreams.request("users", "POST", "/v1/users/login", [], b"{}")
    assert (failure.value.status, failure.value.message) == (502, "upstream unavailable")
    assert (users.connections, len(requests)) == (1, 2)


def test_an_upstream_that_closes_mid_answer_is_a_502(upstream):
    users = upstream(answers(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart", then_close=True))
    with pytest.raises(UpstreamFailure) as failure:
        client(users.url).request("users", "GET", "/x", [], None)
    assert failure.value.status == 502
    assert users.connections == 1


@pytest.mark.parametrize(
    "answer",
    [b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"],
    ids=["not http", "an upgrade nobody asked"],
)
def test_an_answer_that_is_not_http_1_1_is_a_502(upstream, answer):
    users = upstream(answers(answer))
    with pytest.raises(UpstreamFailure) as failure:
        client(users.url).request("users", "GET", "/x", [], None)
    assert (failure.value.status, failure.value.message) == (502, "upstream unavailable")


def test_a_read_timeout_on_a_kept_connection_is_a_504_and_the_request_is_not_sent_again(upstream):
    requests = []

    def answers_once_then_never(connection):
        while read_request(connection):
            requests.append(1)
            if len(requests) == 1:
                connection.sendall(OK)
        # the second request is never answered; the client gives up first

    users = upstream(answers_once_then_never)
    upstreams = client(users.url, read_timeout=0.3)
    assert upstreams.request("users", "GET", "/x", [], None).status == 200
    started = time.monotonic()
    with pytest.raises(UpstreamFailure) as failure:
        upstreams.request("users", "GET", "/x", [], None)
    assert (failure.value.status, failure.value.message) == (504, "upstream timeout")
    assert 0.3 <= time.monotonic() - started < 1.0
    assert (users.connections, len(requests)) == (1, 2)


def test_a_longer_read_timeout_for_one_call_waits_longer_on_the_same_connection(upstream):
    def answers_late_after_the_first(connection):
        for index in itertools.count():
            if not read_request(connection):
                return
            time.sleep(0.5 if index else 0)
            connection.sendall(OK)

    users = upstream(answers_late_after_the_first)
    upstreams = client(users.url, read_timeout=0.3)
    assert upstreams.request("users", "GET", "/x", [], None).body == b"ok"
    response = upstreams.request("users", "GET", "/x", [], None, timeout=Timeout(connect=1, read=2))
    assert (response.body, users.connections) == (b"ok", 1)
    # The next call waits the client's own read timeout again.
    with pytest.raises(UpstreamFailure) as failure:
        upstreams.request("users", "GET", "/x", [], None)
    assert failure.value.status == 504


@pytest.mark.parametrize("url", ["https://users:8443", "users:8081", "http://"])
def test_an_upstream_url_that_is_not_plain_http_is_refused_at_start(url):
    with pytest.raises(ValueError, match="an upstream URL is"):
        Upstreams({"users": url}, connect_timeout=1, read_timeout=1, public_url=PUBLIC_URL)


def test_a_port_nobody_listens_on_is_a_502():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    with pytest.raises(UpstreamFailure) as failure:
        client(f"http://127.0.0.1:{port}").request("users", "GET", "/x", [], None)
    assert (failure.value.status, failure.value.message) == (502, "upstream unavailable")


def test_a_connect_that_times_out_is_tried_once_more_then_a_504():
    # A listener whose accept queue is full: Linux drops the SYNs of any
    # further connect, which then times out.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued = []
        for _ in range(4):
            waiting = socket.socket()
            waiting.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                waiting.connect(listener.getsockname())
            queued.append(waiting)
        upstreams = client(f"http://127.0.0.1:{listener.getsockname()[1]}", connect_timeout=0.25)
        started = time.monotonic()
        with pytest.raises(UpstreamFailure) as failure:
            upstreams.request("users", "POST", "/x", [], b"{}")
        elapsed = time.monotonic() - started
        for waiting in queued:
            waiting.close()
    assert (failure.value.status, failure.value.message) == (504, "upstream timeout")
    assert 0.5 <= elapsed < 1.5, "two connects of a quarter of a second each"


def test_eight_threads_share_a_bounded_pool_of_kept_connections(upstream):
    users = upstream(answers(OK))
    upstreams = Upstreams({"users": users.url}, connect_timeout=1, read_timeout=2, pool_size=3, public_url=PUBLIC_URL)

    def calls():
        return [upstreams.request("users", "GET", "/x", [], None).body for _ in range(50)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        bodies = [body for result in pool.map(lambda _: calls(), range(8)) for body in result]
    assert bodies == [b"ok"] * 400
    idle = len(upstreams.pools["users"].idle)
    assert 1 <= idle <= 3
    opened = users.connections
    for _ in range(20):
        upstreams.request("users", "GET", "/x", [], None)
    assert users.connections == opened, "one after another, the kept connections serve"


def test_a_real_waitress_upstream_gets_the_method_path_headers_and_body_on_one_connection():
    def echo(environ, start_response):
        body = json.dumps(
            {
                "method": environ["REQUEST_METHOD"],
                "path": environ["PATH_INFO"] + "?" + environ["QUERY_STRING"],
                "host": environ["HTTP_HOST"],
                "x": environ.get("HTTP_X_A"),
                "body": environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode(),
                "peer": environ["REMOTE_PORT"],
            }
        ).encode()
        start_response(
            "201 Created", [("Content-Type", "application/json"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
        )
        return [body]

    with served(echo) as url:
        upstreams = client(url + "/base")
        responses = [
            upstreams.request("users", "PUT", f"/v1/x?n={n}", [("X-A", "1")], b'{"n": %d}' % n) for n in range(3)
        ]
    assert {response.status for response in responses} == {201}
    seen = [json.loads(response.body) for response in responses]
    assert [s["path"] for s in seen] == [f"/base/v1/x?n={n}" for n in range(3)]
    assert {(s["method"], s["host"], s["x"]) for s in seen} == {("PUT", url.removeprefix("http://"), "1")}
    assert [s["body"] for s in seen] == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
    assert len({s["peer"] for s in seen}) == 1, "kept alive"
    assert [h for h in responses[0].headers if h[0] == "Set-Cookie"] == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]


@pytest.mark.parametrize("surplus", [OK, b"garbage"], ids=["an answer", "garbage"])
def test_bytes_after_an_answer_spoil_its_connection_not_the_answer(upstream, surplus):
    users = upstream(answers(OK + surplus, OK))
    upstreams = client(users.url)
    for _ in range(2):
        assert upstreams.request("users", "GET", "/x", [], None).body == b"ok"
    assert users.connections == 2
