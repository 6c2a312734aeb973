"""The payment timeout's trace: no request causes a cancellation, so each one
starts a trace of its own, linked to its checkout's, and the refund that
answers it is in that trace. A module of its own: no other stack's consumers
may pay the order before it times out."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from goshop_devtools.waiting import poll_until
from tests.e2e.conftest import Http
from tests.e2e.stack import Stack
from tests.otlp import otlp_receiver


@pytest.fixture
def receiver():
    with otlp_receiver() as (spans, port):
        spans.port = port
        yield spans


@pytest.fixture
def shop(settings, kafka_broker, receiver, tmp_path):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GOSHOP_DATABASE_URL": settings.database_url,
        "GOSHOP_DEV_DIR": settings.dev_dir,
        **kafka_broker.client_env,
        "GOSHOP_ORDER_PAYMENT_TIMEOUT_SECONDS": "1",
        "GOSHOP_ORDER_SWEEP_INTERVAL_SECONDS": "0.2",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    shop = Stack(env, tmp_path)
    yield shop
    assert set(shop.stop_all().values()) <= {0}


def test_a_timed_out_order_is_cancelled_and_refunded_in_a_trace_linked_to_its_checkout(shop, receiver):
    # Payments is not running yet: nothing pays the order before it times out.
    for name in ("users", "orders", "outboxer", "orders-consumer"):
        shop.start(name)
    users, orders = Http(shop.ports["users"]), Http(shop.ports["orders"])
    account = {"email": f"late-{uuid.uuid4().hex[:10]}@example.com", "password": "long enough password"}
    assert users.request("POST", "/v1/users/register", account)[0] == 201
    token = users.request("POST", "/v1/users/login", account)[2]["access_token"]
    request_id = f"late-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": request_id}
    status, _, order = orders.request("POST", "/v1/orders", {"amount_cents": 19901}, headers=headers)
    assert status == 201, order

    def cancellation():
        spans = receiver.find(service="goshop-orders-consumer", name="payment timeout")
        mine = [s for s in spans if s.attributes.get("goshop.order.id") == order["id"]]
        return mine[0] if mine else None

    timeout = poll_until(cancellation, 30)
    assert timeout is not None, shop.log("orders-consumer")[-2000:]
    (checkout,) = receiver.find(
        service="goshop-orders", name="POST /v1/orders", trace_id=trace_in_log(shop, request_id)
    )
    assert timeout.parent_id is None
    assert timeout.trace_id != checkout.trace_id
    assert timeout.links == (checkout.trace_id,)

    cancelled = [line for line in shop.log("orders-consumer").splitlines() if "no payment in time" in line]
    assert [json.loads(line[line.index("{") :])["trace_id"] for line in cancelled] == [timeout.trace_id]

    shop.start("payments-consumer")

    expected = {
        ("goshop-orders-consumer", "create orders.events"),
        ("goshop-outboxer", "send orders.events"),
        ("goshop-payments-consumer", "process orders.events"),
        ("goshop-payments-consumer", "create payments.events"),
    }

    def refunded():
        # Every span, not just the refund's: a span is exported when it ends,
        # and the refund's "create" ends before the "process" span around it.
        names = {(s.service, s.name) for s in receiver.trace(timeout.trace_id)}
        return names if expected <= names else None

    names = poll_until(refunded, 60)
    assert names, (
        {(s.service, s.name) for s in receiver.trace(timeout.trace_id)},
        shop.log("payments-consumer")[-2000:],
    )

    # The charge that came late is in the checkout's trace, not the timeout's.
    def charged():
        return [s for s in receiver.trace(checkout.trace_id) if s.name == "process orders.events"] or None

    assert poll_until(charged, 30)


def trace_in_log(shop: Stack, request_id: str) -> str | None:
    for line in shop.log("orders").splitlines():
        if request_id in line and '"trace_id"' in line:
            return json.loads(line[line.index("{") :])["trace_id"]
    return None
