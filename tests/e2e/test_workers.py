"""Each worker as its own process: health and metrics endpoints, and a clean
stop on SIGTERM."""

import signal
import time
import urllib.request

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from goshop_common.messaging.deadletters import REASONS
from goshop_devtools.postgres import free_port
from goshop_devtools.waiting import poll_until
from tests.e2e.conftest import Http, spawn, stop, wait_for
from tests.support import new_customer


def test_outboxer_serves_live_and_ready_and_stops_cleanly_on_sigterm(worker_env, tmp_path):
    port = free_port()
    process = spawn(["-m", "goshop_outboxer", "--port", str(port)], worker_env, tmp_path / "outboxer.log")
    try:
        wait_for(port, "/ready", process=process)
        assert Http(port).request("GET", "/live")[0] == 200
    finally:
        code = stop(process, signal.SIGTERM)
    assert code == 0, (tmp_path / "outboxer.log").read_text()[-2000:]


def test_outboxer_without_a_broker_waits_and_says_so_on_ready(worker_env, tmp_path):
    port = free_port()
    env = {**worker_env, "GOSHOP_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    process = spawn(["-m", "goshop_outboxer", "--port", str(port)], env, tmp_path / "outboxer.log")
    try:
        wait_for(port, "/live", process=process)
        status, _, body = Http(port).request("GET", "/ready")
        assert (status, body) == (503, {"error": "not ready: broker"})
        assert process.poll() is None, "the outboxer must wait for the broker, not exit"
    finally:
        assert stop(process, signal.SIGTERM) == 0


@pytest.mark.parametrize("module", ["goshop_payments.consumer", "goshop_orders.consumer"])
def test_consumers_stop_cleanly_on_sigterm(worker_env, tmp_path, module):
    # A free port: the default (:8086, :8087) may be a running shop's.
    process = spawn(["-m", module, "--port", str(free_port())], worker_env, tmp_path / "consumer.log")
    time.sleep(4)  # into the group join and the poll loop
    assert process.poll() is None, (tmp_path / "consumer.log").read_text()[-2000:]
    code = stop(process, signal.SIGTERM, timeout=30)
    assert code == 0, (tmp_path / "consumer.log").read_text()[-2000:]


def test_the_saga_runs_across_worker_processes(worker_env, tmp_path, testapp, orders_client, engine):
    customer = new_customer(testapp)
    port = free_port()
    processes = [
        spawn(["-m", "goshop_outboxer", "--port", str(port)], worker_env, tmp_path / "outboxer.log"),
        spawn(["-m", "goshop_payments.consumer", "--port", str(free_port())], worker_env, tmp_path / "payments.log"),
        spawn(["-m", "goshop_orders.consumer", "--port", str(free_port())], worker_env, tmp_path / "orders.log"),
    ]
    try:
        order = orders_client.post_json(
            "/v1/orders", {"amount_cents": 19900}, headers={**customer["headers"], "X-Request-ID": "saga-e2e-1"}
        ).json
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                status = connection.execute(
                    sa.text("SELECT status, reason FROM orders.orders WHERE id = :o"), {"o": order["id"]}
                ).one()
            if status.status != "new":
                break
            time.sleep(0.2)
        assert tuple(status) == ("cancelled", "insufficient_funds")
    finally:
        codes = [stop(process, signal.SIGTERM, timeout=30) for process in processes]
    assert codes == [0, 0, 0]
    # One request id follows the order through every process's log.
    for name in ("outboxer.log", "payments.log", "orders.log"):
        assert "saga-e2e-1" in (tmp_path / name).read_text(), name


def scrape(port: int) -> dict[str, list]:
    """Samples by name, as Prometheus reads ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def test_the_outboxer_and_a_consumer_serve_their_metrics_over_http(worker_env, tmp_path):
    consumer_port, outboxer_port = free_port(), free_port()
    processes = {
        "payments": spawn(
            ["-m", "goshop_payments.consumer", "--port", str(consumer_port)], worker_env, tmp_path / "payments.log"
        ),
        "outboxer": spawn(
            ["-m", "goshop_outboxer", "--port", str(outboxer_port)], worker_env, tmp_path / "outboxer.log"
        ),
    }
    try:
        wait_for(consumer_port, "/ready", process=processes["payments"])
        wait_for(outboxer_port, "/ready", process=processes["outboxer"])
        consumer = scrape(consumer_port)
        outboxer = scrape(outboxer_port)
    finally:
        codes = {name: stop(process, signal.SIGTERM, timeout=30) for name, process in processes.items()}
    assert codes == {"payments": 0, "outboxer": 0}

    outcomes = {
        s.labels["outcome"] for s in consumer["goshop_consumer_events_total"] if s.labels["consumer"] == "payments"
    }
    assert outcomes == {"consumed", "applied", "duplicate", "parked", "retried"}
    # Every parked series is there at 0 before the first poison event, so the
    # EventsParked alert's increase() sees the first one.
    parked = {
        (s.labels["topic"], s.labels["reason"]): s.value
        for s in consumer["goshop_events_parked_total"]
        if s.labels["consumer"] == "payments"
    }
    assert parked == {("orders.events", reason): 0.0 for reason in REASONS}
    assert {s.labels["service"] for s in consumer["goshop_db_pool_size"]} == {"payments-consumer"}
    assert {s.labels["route"] for s in consumer["goshop_http_requests_total"]} >= {"ready"}

    backlog = {s.labels["table"]: s.value for s in outboxer["goshop_outbox_backlog"]}
    assert set(backlog) == {"orders.outbox", "payments.outbox"}
    assert all(s.value >= 0 for s in outboxer["goshop_outbox_oldest_pending_age_seconds"])
    assert {s.labels["service"] for s in outboxer["goshop_db_pool_size"]} == {"outboxer"}


def test_the_orders_consumer_process_times_out_an_unpaid_order_and_payments_refunds_it_late(
    worker_env, tmp_path, testapp, orders_client, engine
):
    customer = new_customer(testapp)
    env = {**worker_env, "GOSHOP_ORDER_PAYMENT_TIMEOUT_SECONDS": "1", "GOSHOP_ORDER_SWEEP_INTERVAL_SECONDS": "0.2"}
    orders_port = free_port()
    processes = {
        "outboxer": spawn(["-m", "goshop_outboxer", "--port", str(free_port())], env, tmp_path / "outboxer.log"),
        "orders": spawn(["-m", "goshop_orders.consumer", "--port", str(orders_port)], env, tmp_path / "orders.log"),
    }

    def state(sql, **params):
        with engine.connect() as connection:
            return connection.execute(sa.text(sql), params).all()

    try:
        order = orders_client.post_json("/v1/orders", {"amount_cents": 19901}, headers=customer["headers"]).json
        poll_until(lambda: state("SELECT 1 FROM orders.orders WHERE id = :o AND status <> 'new'", o=order["id"]), 30)
        assert [tuple(r) for r in state("SELECT status, reason FROM orders.orders WHERE id = :o", o=order["id"])] == [
            ("cancelled", "payment_timeout")
        ]
        [timeouts] = scrape(orders_port)["goshop_orders_payment_timeouts_total"]
        assert timeouts.value == 1

        processes["payments"] = spawn(
            ["-m", "goshop_payments.consumer", "--port", str(free_port())], env, tmp_path / "payments.log"
        )
        refunded = "SELECT 1 FROM payments.payments WHERE order_id = :o AND status = 'refunded'"
        assert poll_until(lambda: state(refunded, o=order["id"]), 60), (tmp_path / "payments.log").read_text()[-2000:]
    finally:
        codes = {name: stop(process, signal.SIGTERM, timeout=30) for name, process in processes.items()}
    assert codes == {"outboxer": 0, "orders": 0, "payments": 0}
    assert [tuple(r) for r in state("SELECT status FROM orders.orders WHERE id = :o", o=order["id"])] == [
        ("cancelled",)
    ]
