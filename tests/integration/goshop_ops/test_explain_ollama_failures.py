"""Ollama failing in the ways a real server or network can: each is a 502
"llm unavailable" that says why and still carries the order's timeline."""

import socket
import time

import pytest

from tests.integration.goshop_ops import fake_ollama
from tests.integration.goshop_ops.conftest import OPERATOR, create_order, make_ops_app

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def ollama():
    server = fake_ollama.FakeOllama().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ollama_app(service_settings, ollama):
    app = make_ops_app(service_settings, ollama_url=ollama.url, ollama_timeout=TIMEOUT)
    yield app
    app.registry.dbengine.dispose()


@pytest.fixture
def order(orders_client, customer):
    return create_order(orders_client, customer, 19900)


def explain_unavailable(app, seam_client, order) -> str:
    """The 502 for ``order``, checked for its timeline; returns the reason."""
    response = seam_client(app).post_json(f"/v1/ops/orders/{order['id']}/explain", {}, headers=OPERATOR, status=502)
    assert response.json["error"] == "llm unavailable"
    assert response.json["timeline"]["order"]["id"] == order["id"]
    return response.json["reason"]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (fake_ollama.NOT_HTTP, "ollama connection failed: BadStatusLine"),
        (fake_ollama.HUGE, "ollama's answer is too large"),
        (fake_ollama.NO_CONTENT, "ollama's answer has no message content"),
    ],
    ids=["not-http", "answer-over-a-megabyte", "answer-without-content"],
)
def test_an_unusable_answer_from_ollama_is_a_502_saying_why(ollama, ollama_app, seam_client, order, mode, reason):
    ollama.mode = mode
    try:
        assert explain_unavailable(ollama_app, seam_client, order) == reason
    finally:
        ollama.mode = fake_ollama.OK
    assert ollama.requests, "ollama was asked"


@pytest.fixture
def unaccepting_port():
    """A port whose listener never accepts and whose queue is full: a new
    connection's handshake gets no answer, as from a host that is away."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


def test_ollama_not_taking_the_connection_within_the_timeout_is_a_502(
    service_settings, seam_client, order, unaccepting_port
):
    app = make_ops_app(service_settings, ollama_url=f"http://127.0.0.1:{unaccepting_port}", ollama_timeout=TIMEOUT)
    try:
        started = time.monotonic()
        reason = explain_unavailable(app, seam_client, order)
    finally:
        app.registry.dbengine.dispose()
    assert reason == "ollama did not answer within 1s"
    assert time.monotonic() - started < TIMEOUT + 2
