"""The ops API through the gateway: the operator's Authorization reaches ops
unchanged, the gateway does not mistake it for a customer's token, and an
explanation may take as long as the LLM is allowed to."""

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest
import webtest

from tests.integration.goshop_ops.conftest import OPERATOR, create_order
from tests.support import SavepointSeam, served, with_settings


def gateway(service_settings, **changes):
    from goshop_gateway import make_app

    return webtest.TestApp(make_app(with_settings(service_settings, **changes)))


@pytest.fixture
def ops_url(ops_app, db_connection) -> Iterator[str]:
    """The ops app on 127.0.0.1 behind waitress, in a background thread,
    through the seam: it reads the orders the test's orders_client wrote on
    the test's connection (one request at a time: the gateway waits for it)."""
    with served(SavepointSeam(ops_app, db_connection)) as url:
        yield url


@pytest.fixture
def slow_upstream() -> Iterator[str]:
    """Answers every request after 1.5 s: slower than the gateway's read timeout."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _slow(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            time.sleep(1.5)
            body = json.dumps({"answer": "late but here"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _slow

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_operator_reads_a_timeline_and_asks_for_an_explanation_through_the_gateway(
    service_settings, ops_url, orders_client, customer
):
    order = create_order(orders_client, customer, 19901)
    client = gateway(service_settings, ops_url=ops_url)
    body = client.get(f"/v1/ops/orders/{order['id']}/timeline", headers=OPERATOR).json
    assert body["order"]["id"] == order["id"]
    markdown = client.get(f"/v1/ops/orders/{order['id']}/timeline.md", headers=OPERATOR)
    assert markdown.content_type == "text/markdown"
    assert markdown.text == body["markdown"]
    answer = client.post_json(f"/v1/ops/orders/{order['id']}/explain", {"question": "why?"}, headers=OPERATOR).json
    assert answer["source"] == "rules"


def test_the_gateway_passes_refusals_of_ops_through(service_settings, ops_url, orders_client, customer):
    order = create_order(orders_client, customer, 19901)
    client = gateway(service_settings, ops_url=ops_url)
    path = f"/v1/ops/orders/{order['id']}/timeline"
    assert client.get(path, status=401).json == {"error": "unauthorized"}
    # A valid customer token passes the gateway's checks elsewhere; here ops refuses it.
    assert client.get(path, headers=customer["headers"], status=401).json == {"error": "unauthorized"}
    client.post_json(f"/v1/ops/orders/{order['id']}/explain", {"question": 1}, headers=OPERATOR, status=400)


def test_the_gateways_readiness_includes_ops(service_settings, ops_url):
    client = gateway(service_settings, ops_url=ops_url)
    internal = webtest.TestApp(client.app.registry.goshop_internal_app)
    states = internal.get("/ready", status="*").json["upstreams"]
    assert states["ops"] == "ok"


def test_an_explanation_may_take_the_llms_time_but_a_timeline_may_not(service_settings, slow_upstream):
    client = gateway(service_settings, ops_url=slow_upstream, upstream_read_timeout=1.0, ollama_timeout=2.0)
    answer = client.post_json("/v1/ops/orders/x/explain", {}, headers=OPERATOR, status=200)
    assert answer.json == {"answer": "late but here"}
    response = client.get("/v1/ops/orders/x/timeline", headers=OPERATOR, status=504)
    assert response.json == {"error": "upstream timeout"}
