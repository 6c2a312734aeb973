"""With OLLAMA_URL set, explanations come from Ollama's /api/chat, here a
local server speaking its protocol; when it fails, the operator gets a 502
that still carries the timeline."""

import socket
import time

import pytest
import webtest

from goshop_devtools.postgres import free_port
from tests.integration.goshop_ops import fake_ollama
from tests.integration.goshop_ops.conftest import OPERATOR, create_order, make_ops_app

MODEL = "llama3.2:1b"
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def ollama():
    server = fake_ollama.FakeOllama(content="  It was cancelled because the card had insufficient funds.\n").start()
    yield server
    server.stop()


@pytest.fixture
def fresh_ollama(ollama):
    ollama.mode = fake_ollama.OK
    ollama.requests.clear()
    return ollama


@pytest.fixture(scope="module")
def ollama_app(service_settings, ollama):
    app = make_ops_app(
        service_settings,
        ollama_url=ollama.url + "/",
        ollama_model=MODEL,
        ollama_timeout=TIMEOUT,
        ollama_temperature=0.1,
    )
    yield app
    app.registry.dbengine.dispose()


@pytest.fixture
def client(ollama_app, fresh_ollama, clean_db):
    return webtest.TestApp(ollama_app)


# Committed, one transaction per request as in production: a timeline orders
# the service's clock (the order) against the database's now() (its outbox
# row), and in a test's one rolled-back transaction now() is when the test
# began. Every table is emptied around each test.
pytestmark = pytest.mark.commits


@pytest.fixture
def order(orders_client, customer):
    return create_order(orders_client, customer, 19900)


def explain(client, order_id, body=None, status=200):
    return client.post_json(f"/v1/ops/orders/{order_id}/explain", body or {}, headers=OPERATOR, status=status)


def test_ollama_is_asked_with_the_model_temperature_question_and_timeline(client, ollama, order):
    body = explain(client, order["id"], {"question": "Why is my order stuck?"}).json
    [request] = ollama.requests
    assert request["model"] == MODEL
    assert request["stream"] is False
    assert request["options"] == {"temperature": 0.1}
    system, user = request["messages"]
    assert system["role"] == "system"
    assert "outboxer" in system["content"]
    assert user["role"] == "user"
    assert user["content"].startswith("Why is my order stuck?")
    # The timeline is the context: the same markdown the API returns.
    assert body["timeline"]["markdown"] in user["content"]
    assert order["id"] in user["content"]


def test_ollamas_answer_is_returned_with_its_source_and_model(client, order):
    body = explain(client, order["id"]).json
    assert body["answer"] == "It was cancelled because the card had insufficient funds."
    assert body["source"] == "ollama"
    assert body["model"] == MODEL
    assert body["timeline"]["order"]["id"] == order["id"]


def test_without_a_question_ollama_is_asked_why_the_order_is_where_it_is(client, ollama, order):
    explain(client, order["id"])
    user = ollama.requests[0]["messages"][1]["content"]
    assert user.startswith("Why is this order in its current state?")


def _assert_llm_unavailable(response, order):
    assert response.status_int == 502
    assert response.json["error"] == "llm unavailable"
    timeline = response.json["timeline"]
    assert timeline["order"]["id"] == order["id"]
    assert [e["event"] for e in timeline["entries"]][:1] == ["order created"]
    assert timeline["markdown"].startswith(f"# Order {order['id']}")


def test_an_ollama_error_is_a_502_that_still_carries_the_timeline(client, ollama, order):
    ollama.mode = fake_ollama.ERROR
    response = explain(client, order["id"], status=502)
    _assert_llm_unavailable(response, order)
    assert "500" in response.json["reason"]


def test_an_answer_that_is_not_ollamas_json_is_a_502(client, ollama, order):
    ollama.mode = fake_ollama.GARBAGE
    response = explain(client, order["id"], status=502)
    _assert_llm_unavailable(response, order)
    assert "not JSON" in response.json["reason"]


def test_ollama_hanging_past_the_timeout_is_a_502(client, ollama, order):
    ollama.mode = fake_ollama.HANG
    started = time.monotonic()
    response = explain(client, order["id"], status=502)
    assert time.monotonic() - started < TIMEOUT + 2
    _assert_llm_unavailable(response, order)
    assert "did not answer within 1s" in response.json["reason"]
    assert len(ollama.requests) == 1  # it was asked, and did not answer


def test_ollama_not_listening_is_a_502(service_settings, order):
    port = free_port()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "nothing may listen there"
    app = make_ops_app(service_settings, ollama_url=f"http://127.0.0.1:{port}", ollama_timeout=TIMEOUT)
    try:
        response = explain(webtest.TestApp(app), order["id"], status=502)
    finally:
        app.registry.dbengine.dispose()
    _assert_llm_unavailable(response, order)
    assert "unreachable" in response.json["reason"]


def test_the_timeline_does_not_ask_ollama(client, ollama, order):
    client.get(f"/v1/ops/orders/{order['id']}/timeline", headers=OPERATOR)
    assert ollama.requests == []


def test_an_unknown_order_is_404_without_asking_ollama(client, ollama):
    explain(client, "00000000-0000-0000-0000-000000000000", status=404)
    assert ollama.requests == []
