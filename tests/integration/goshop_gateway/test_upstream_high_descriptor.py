"""The gateway's client on sockets whose descriptor is 1024 or more, as the
gateway has once slowclients raises its open-files limit to take
GOSHOP_HTTP_CONNECTION_LIMIT connections: select.select refuses those
(ValueError), so taking an idle connection from the pool must not use it."""

from __future__ import annotations

import os
import resource
import socket
import time

import pytest

from goshop_gateway import upstream as upstream_module
from tests.integration.goshop_gateway.raw_http import read_request
from tests.integration.goshop_gateway.test_upstream_failures import OK, answers, client, upstream

__all__ = ["upstream"]  # the fixture, used below

HIGH = 1500


@pytest.fixture
def high_descriptors(monkeypatch):
    """Every connection the client opens is moved to a descriptor ≥ HIGH
    (dup2), the open-files limit raised for it when it is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= HIGH + 64:
        if hard != resource.RLIM_INFINITY and hard <= HIGH + 64:
            pytest.skip(f"the open-files hard limit ({hard}) is below {HIGH}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (HIGH + 256, hard))
    real = socket.create_connection
    moved = []

    def create_connection(address, timeout=None, *args, **kwargs):
        sock = real(address, timeout, *args, **kwargs)
        target = HIGH + len(moved)
        os.dup2(sock.fileno(), target)
        high = socket.socket(sock.family, sock.type, sock.proto, fileno=target)
        high.settimeout(sock.gettimeout())
        sock.close()
        moved.append(high)
        return high

    monkeypatch.setattr(upstream_module.socket, "create_connection", create_connection)
    yield moved
    for sock in moved:
        sock.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_kept_connection_on_a_high_descriptor_is_taken_from_the_pool_and_reused(upstream, high_descriptors):
    users = upstream(answers(OK))
    upstreams = client(users.url)
    for _ in range(3):
        assert upstreams.request("users", "GET", "/x", [], None).body == b"ok"
    assert [sock.fileno() >= 1024 for sock in high_descriptors] == [True]
    assert users.connections == 1, "kept alive, and found not dropped"
    upstreams.close()


def test_a_kept_connection_on_a_high_descriptor_the_upstream_closed_is_dropped(upstream, high_descriptors):
    def answers_once_then_closes(connection):
        read_request(connection)
        connection.sendall(OK)

    users = upstream(answers_once_then_closes)
    upstreams = client(users.url)
    assert upstreams.request("users", "GET", "/x", [], None).body == b"ok"
    time.sleep(0.2)  # the upstream's FIN reaches the idle connection
    assert upstreams.request("users", "POST", "/x", [], b"{}").body == b"ok"
    assert users.connections == 2
    assert all(sock.fileno() == -1 or sock.fileno() >= 1024 for sock in high_descriptors)
    upstreams.close()
