"""One checkout, one trace: the whole shop as processes exporting to an OTLP
receiver (tests/otlp.py), read back as a trace backend would."""

from __future__ import annotations

import http.client
import json
import os
import time
import uuid

import pytest

from goshop_devtools.waiting import poll_until
from tests.e2e.conftest import Http
from tests.e2e.stack import Stack
from tests.e2e.test_gateway import settle, sign_up
from tests.otlp import otlp_receiver

TRACED = {"goshop-gateway", "goshop-orders", "goshop-outboxer", "goshop-payments-consumer", "goshop-orders-consumer"}
# The gateway's development.ini trusts no proxy; here it trusts 127.0.0.1 as
# if that were the ingress, and a client on 127.0.0.2 is the internet.
TRUSTED_PEER, UNTRUSTED_PEER = "127.0.0.1", "127.0.0.2"


@pytest.fixture(scope="module")
def receiver():
    with otlp_receiver() as (spans, port):
        spans.port = port
        yield spans


@pytest.fixture(scope="module")
def stack(settings, service_settings, kafka_broker, receiver, tmp_path_factory):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GOSHOP_DATABASE_URL": settings.database_url,
        "GOSHOP_DEV_DIR": settings.dev_dir,
        **kafka_broker.client_env,
        "GOSHOP_TRUSTED_PROXIES": f"{TRUSTED_PEER}/32",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        # Export within a fifth of a second, not the SDK's 5 s.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    shop = Stack(env, tmp_path_factory.mktemp("traced-stack")).start_all()
    yield shop
    codes = shop.stop_all()
    assert set(codes.values()) == {0}, codes


@pytest.fixture(scope="module")
def gw(stack):
    return Http(stack.gateway)


def post_checkout(port: int, source: str, headers: dict, amount: int) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        body = json.dumps({"amount_cents": amount, "currency": "RUB"}).encode()
        connection.request("POST", "/v1/checkout", body=body, headers={**headers, "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def trace_of(stack: Stack, request_id: str) -> str | None:
    """The trace id the gateway's log line for ``request_id`` names."""
    for line in stack.log("gateway").splitlines():
        if request_id in line and '"trace_id"' in line:
            return json.loads(line[line.index("{") :])["trace_id"]
    return None


def gateway_span(receiver, stack: Stack, request_id: str):
    """The gateway's server span of the request with ``request_id``, found by
    the trace id its log line carries beside the request id."""

    def exported():
        spans = receiver.find(service="goshop-gateway", kind="server", trace_id=trace_of(stack, request_id))
        return spans[0] if spans else None

    return poll_until(exported, 15)


def spans_to_final_state(receiver, trace_id: str):
    """The trace once the orders consumer's span that settled the order is in
    and every span's parent with it. Each process exports on its own clock:
    the orders consumer's spans can arrive before the outboxer's relay span,
    which ends only after its commit, so a parent may be late; the last state
    seen if that never happens."""
    spans = []

    def complete():
        spans[:] = receiver.trace(trace_id)
        ids = {s.span_id for s in spans}
        settled = [s for s in spans if s.service == "goshop-orders-consumer" and s.name == "process payments.events"]
        return settled and all(s.parent_id is None or s.parent_id in ids for s in spans)

    poll_until(complete, 30)
    return spans


def parent_of(span, spans):
    return next((s for s in spans if s.span_id == span.parent_id), None)


def ancestors(span, spans) -> list:
    chain = []
    while (span := parent_of(span, spans)) is not None:
        chain.append(span)
    return chain


def test_one_checkout_is_one_trace_from_the_gateway_to_the_orders_final_state(gw, stack, receiver):
    customer = sign_up(gw)
    request_id = f"traced-{uuid.uuid4().hex[:8]}"
    status, _, order = gw.request(
        "POST",
        "/v1/checkout",
        {"amount_cents": 19901, "currency": "RUB"},
        headers={**customer["auth"], "X-Request-ID": request_id},
    )
    assert status == 201, order
    assert settle(gw, customer, order["id"])["status"] == "paid"

    root = gateway_span(receiver, stack, request_id)
    assert root is not None, "the gateway's log line names no exported trace"
    spans = spans_to_final_state(receiver, root.trace_id)
    assert spans, f"the trace never reached the orders consumer: {receiver.trace(root.trace_id)}"
    assert {span.service for span in spans} >= TRACED
    # One tree: the gateway's span is the root, and every other span's parent
    # is in the trace, across HTTP and both trips through Kafka.
    assert root.parent_id is None
    assert root.name == "POST /v1/checkout"
    assert root.attributes["http.route"] == "/v1/checkout"
    assert root.attributes["http.request.method"] == "POST"
    assert root.attributes["http.response.status_code"] == 201
    orphans = [span for span in spans if span is not root and parent_of(span, spans) is None]
    assert not orphans, orphans

    # The hops, each the child of the one before.
    settled = next(s for s in spans if s.service == "goshop-orders-consumer" and s.name == "process payments.events")
    chain = [(s.service, s.name) for s in ancestors(settled, spans)]
    hops = [
        ("goshop-outboxer", "send payments.events"),
        ("goshop-outboxer", "relay payments.outbox"),
        ("goshop-payments-consumer", "create payments.events"),
        ("goshop-payments-consumer", "process orders.events"),
        ("goshop-outboxer", "send orders.events"),
        ("goshop-outboxer", "relay orders.outbox"),
        ("goshop-orders", "create orders.events"),
        ("goshop-orders", "POST /v1/orders"),
    ]
    assert [hop for hop in chain if hop in hops] == hops, chain
    assert chain[-1] == ("goshop-gateway", "POST /v1/checkout")

    # The conventions' names on the library spans and the hand-written ones.
    send = next(s for s in spans if s.name == "send orders.events")
    assert send.kind == "producer"
    assert send.attributes["messaging.system"] == "kafka"
    assert send.attributes["messaging.destination.name"] == "orders.events"
    assert send.attributes["messaging.operation.type"] == "send"
    process = next(s for s in spans if s.name == "process orders.events")
    assert process.kind == "consumer"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["goshop.consumer.outcome"] == "applied"
    inbox = next(s for s in spans if s.name == "inbox payments.inbox")
    assert inbox.attributes["goshop.inbox.first_delivery"] is True
    queries = [s for s in spans if s.attributes.get("db.system.name") == "postgresql" and s.kind == "client"]
    assert {s.service for s in queries} >= {"goshop-orders", "goshop-payments-consumer", "goshop-orders-consumer"}
    assert all("db.query.text" in s.attributes for s in queries)
    upstream = next(s for s in spans if s.service == "goshop-gateway" and s.kind == "client")
    assert upstream.attributes["http.request.method"] == "POST"
    assert upstream.attributes["http.response.status_code"] == 201
    assert {s.name for s in spans if s.service == "goshop-outboxer"} >= {"claim orders.outbox", "mark orders.outbox"}

    # Each process's log lines about the order name the trace beside the request id.
    for name in ("gateway", "orders", "outboxer", "payments-consumer", "orders-consumer"):
        lines = [json.loads(line) for line in stack.log(name).splitlines() if request_id in line and "{" in line]
        assert lines, name
        assert {line.get("trace_id") for line in lines} == {root.trace_id}, (name, lines)

    # The ops timeline shows the trace of each step it read from an outbox or inbox.
    status, _, timeline = gw.request(
        "GET", f"/v1/ops/orders/{order['id']}/timeline", headers={"Authorization": "Bearer dev-only-ops-token"}
    )
    assert status == 200, timeline
    traced = [entry for entry in timeline["entries"] if entry["source"] == "outboxer" or "event_id" in entry["detail"]]
    assert len(traced) == 4  # two events, each published and applied
    assert {entry.get("trace_id") for entry in traced} == {root.trace_id}


def test_a_trusted_callers_trace_is_continued_and_an_untrusted_callers_is_not(gw, stack, receiver):
    customer = sign_up(gw)
    continued, ignored = uuid.uuid4().hex, uuid.uuid4().hex
    for source, trace_id in ((TRUSTED_PEER, continued), (UNTRUSTED_PEER, ignored)):
        headers = {**customer["auth"], "traceparent": f"00-{trace_id}-{'ab' * 8}-01", "X-Request-ID": trace_id}
        status, order = post_checkout(stack.gateway, source, headers, 19901)
        assert status == 201, order

    root = gateway_span(receiver, stack, continued)
    assert root is not None
    assert (root.trace_id, root.parent_id) == (continued, "ab" * 8)
    fresh = gateway_span(receiver, stack, ignored)
    assert fresh is not None
    assert fresh.trace_id != ignored
    assert fresh.parent_id is None
    # Nor did any upstream see it: the gateway forwards a trace of its own.
    downstream = spans_to_final_state(receiver, fresh.trace_id)
    assert "goshop-orders-consumer" in {span.service for span in downstream}
    assert receiver.trace(ignored) == []


def test_a_parked_copy_is_sent_in_its_records_process_span_never_as_a_trace_of_its_own(stack, receiver, kafka_broker):
    from goshop_common.messaging.kafka import make_producer
    from goshop_domain.events import ORDERS_TOPIC

    key = f"poison-{uuid.uuid4().hex[:8]}".encode()
    producer = make_producer(kafka_broker.bootstrap)
    try:
        producer.send(ORDERS_TOPIC, key=key, value=b"not json").get(10)
    finally:
        producer.close(timeout=5)

    def parked_send():
        return [
            span
            for span in receiver.find(service="goshop-payments-consumer", kind="producer")
            if span.attributes.get("messaging.destination.name") == f"{ORDERS_TOPIC}.dlq"
            and span.attributes.get("messaging.kafka.message.key") in (key.decode(), None)
        ]

    assert poll_until(parked_send, 30), "no send of the parked copy was exported"
    processes = {
        span.span_id: span
        for span in receiver.find(service="goshop-payments-consumer", kind="consumer")
        if span.attributes.get("messaging.kafka.message.key") == key.decode()
    }
    [process] = processes.values()
    assert process.attributes["goshop.consumer.outcome"] == "parked"
    sends = [span for span in parked_send() if span.trace_id == process.trace_id]
    assert [span.parent_id for span in sends] == [process.span_id]


def test_probes_and_polling_are_not_traced(stack, receiver):
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        assert Http(stack.gateway).request("GET", "/ready")[0] == 200
    time.sleep(0.5)
    assert not [span for span in receiver.spans if span.attributes.get("url.path") in {"/live", "/ready"}]
    # Every trace starts with a request, or with an event that came without
    # one (written before tracing was on: an earlier test's): the workers'
    # polling queries and the health checks' pings start none of their own.
    roots = [span for span in receiver.spans if span.parent_id is None]
    assert roots
    assert {span.kind for span in roots} <= {"server", "consumer"}, roots
    assert [span for span in roots if span.kind == "server"]
