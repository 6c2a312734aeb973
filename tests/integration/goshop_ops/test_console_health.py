"""The console's health strip asks real processes over sockets: each one's
/ready, and the outbox backlog and consumer lag in the /metrics of those that
export them; one that does not answer is shown as such, never waited for."""

from __future__ import annotations

import socket
import time

from goshop_ops.console import health
from tests.support import served

METRICS = b"""# HELP goshop_outbox_backlog Outbox rows not yet published.
# TYPE goshop_outbox_backlog gauge
goshop_outbox_backlog{table="orders.outbox"} 3.0
goshop_outbox_backlog{table="payments.outbox"} 1.0
# HELP goshop_consumer_lag Records on an assigned partition not yet fetched.
# TYPE goshop_consumer_lag gauge
goshop_consumer_lag{consumer="payments",partition="0",topic="orders.events"} 4.0
goshop_consumer_lag{consumer="payments",partition="1",topic="orders.events"} 2.0
"""


def process(ready_status: str):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/metrics":
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
            return [METRICS]
        start_response(ready_status, [("Content-Type", "application/json")])
        return [b"{}"]

    return app


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_strip_shows_who_is_ready_and_sums_backlog_and_lag():
    with served(process("200 OK")) as up, served(process("503 Service Unavailable")) as down:
        gone = f"http://127.0.0.1:{closed_port()}"
        started = time.monotonic()
        strip = health.gather(
            (("outboxer", f"{up}/ready"), ("payments-consumer", f"{down}/ready"), ("maintenance", f"{gone}/ready")),
            (("outboxer", f"{up}/metrics"), ("maintenance", f"{gone}/metrics")),
            lambda: 2,
            lambda: {"paid": 5, "cancelled": 1},
        )
    assert time.monotonic() - started < 2 * health.ASK_TIMEOUT_SECONDS
    assert strip.processes == (
        ("outboxer", "ready"),
        ("payments-consumer", "not ready (503)"),
        ("maintenance", "unreachable"),
    )
    assert strip.outbox_backlog == {"orders.outbox": 3, "payments.outbox": 1}
    assert strip.consumer_lag == {"payments": 6}
    assert (strip.parked, strip.settled) == (2, {"paid": 5, "cancelled": 1})


def test_backlog_and_lag_are_unknown_when_no_exporter_answers():
    gone = f"http://127.0.0.1:{closed_port()}"
    strip = health.gather((), (("outboxer", f"{gone}/metrics"),), lambda: None, dict)
    assert (strip.outbox_backlog, strip.consumer_lag, strip.parked) == (None, None, None)
