"""The gateway's answers when an upstream misbehaves on the wire, and its
pool of kept-alive connections: real sockets, the gateway under WebTest."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import webtest

from goshop_gateway import make_app
from goshop_gateway.upstream import Upstreams
from tests.support import with_settings

LOGIN = {"email": "someone@example.com", "password": "long enough password"}


class RawUpstream:
    """A TCP server on 127.0.0.1 that hands each connection to ``behaviour``
    and counts the connections it accepted."""

    def __init__(self, behaviour: Callable[[socket.socket], None]):
        self.behaviour = behaviour
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            self.behaviour(connection)

    def close(self) -> None:
        # shutdown() wakes the accept() of the other thread; close() alone does not.
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)
        assert not self.thread.is_alive()


def _read_request(connection: socket.socket) -> bool:
    """Reads one request's head and its Content-Length body; False at end of stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        body += connection.recv(65536)
    return True


def drops_the_connection(connection):
    _read_request(connection)


def answers_too_late(connection):
    _read_request(connection)
    time.sleep(1.5)


def answers_ok_and_keeps_alive(connection):
    while _read_request(connection):
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
    upstreams = Upstreams({"users": users.url}, connect_timeout=1, read_timeout=1)
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
    upstreams = Upstreams({"users": users.url + "/base/"}, connect_timeout=1, read_timeout=1)
    assert upstreams.request("users", "GET", "/v1/users/me?x=1", [], None).status == 200
    assert seen == [b"GET /base/v1/users/me?x=1 HTTP/1.1"]
