"""Liveness means progress: a consumer that stops making progress fails its
``/live`` (``EventConsumer.stalled``), and ``make run`` restarts it, as it does
a worker that stops answering ``/live`` at all.

The wedge is a lock: the test holds an inbox in ACCESS EXCLUSIVE mode, so the
consumer's batch waits out its statement timeout and is tried again, over and
over, while its database and broker answer. Under ``make run`` the lock is
released only once the wedged process is gone: the release is what lets any
consumer through, and it comes too late for the wedged one, so the order that
ends paid was paid by the process that replaced it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import signal
import threading
import uuid
from collections.abc import Iterator

import psycopg2
import pytest
import sqlalchemy as sa

from goshop_common.messaging.consumer import EventConsumer
from goshop_common.messaging.deadletters import DeadLetters
from goshop_common.messaging.inbox import inbox_table
from goshop_common.messaging.kafka import make_consumer, make_producer
from goshop_devtools import supervisor
from goshop_devtools.console import Console
from goshop_devtools.postgres import EmbeddedPostgres, free_port
from goshop_devtools.supervisor import Spec, Supervisor
from goshop_devtools.waiting import poll_until
from goshop_domain.events import ORDER_CREATED, ORDERS_TOPIC, event_headers
from tests.e2e.conftest import Http
from tests.e2e.test_make_run import Runner, _alive, _checkout_ends, _settled, _sign_up
from tests.support import scratch_schema, with_settings

# Low, so that the shop's test waits seconds, not the default minute; not
# lower: the replacement must join its group (about 3 s on Tansu) before its
# own /live fails (supervisor.LIVE_FAILURES probes after this).
STALL_SECONDS = 3
# The payments consumer's health port (goshop_devtools.run.PROCESSES).
PAYMENTS_CONSUMER_OFFSET = 7

# What a consumer wedged on a lock holds, by when /live is asked: the batch
# it is applying, or, between its retries, the events it is behind by.
HOLDING = r"(?:1 events behind|applying 1 events of orders\.events\[\d\])"


def _not_live(port: int) -> str | None:
    """The error of a 503 from ``/live`` on ``port``; None while it answers otherwise."""
    status, _, body = Http(port).request("GET", "/live")
    return body["error"] if status == 503 else None


def test_make_run_restarts_a_stalled_consumer_and_the_saga_resumes(tmp_path):
    runner = Runner(tmp_path, log_format="console")
    runner.env["GOSHOP_CONSUMER_STALL_SECONDS"] = str(STALL_SECONDS)
    runner.start()
    try:
        runner.wait_until_up()
        gw, health = Http(runner.base), runner.base + PAYMENTS_CONSUMER_OFFSET
        auth = _sign_up(gw)
        # First the saga as it is: the consumer has joined its group and caught up.
        assert _checkout_ends(gw, auth) == "paid"
        wedged = runner.child("goshop_payments.consumer")
        database = EmbeddedPostgres(runner.data_dir / "pgdata", runner.ports["pg"]).url
        with contextlib.closing(psycopg2.connect(database)) as lock:
            with lock.cursor() as cursor:
                # Held by the connection's open transaction, until its rollback.
                cursor.execute("LOCK TABLE payments.inbox IN ACCESS EXCLUSIVE MODE")
            mark = len(runner.log)
            order = {"amount_cents": 19901, "currency": "RUB"}
            status, _, order = gw.request("POST", "/v1/checkout", order, headers=auth)
            assert status == 201, order
            error = poll_until(lambda: _not_live(health), timeout=30)
            assert error is not None, "/live never failed"
            assert re.fullmatch(r"not live: no progress for \d+ s \(.+\)", error), error
            said = rf"payments-consumer failed /live: no progress for \d+ s \({HOLDING}\); restarting\n"
            runner.wait_for(said, 30, mark)
            assert poll_until(lambda: not _alive(wedged), timeout=10), "the wedged consumer outlived its restart"
            # The wedged process never got through: the order waits for its successor.
            assert gw.request("GET", f"/v1/orders/{order['id']}/status", headers=auth)[2]["status"] == "new"
            lock.rollback()
        runner.wait_for(r"payments-consumer is back \(ready in [\d.]+ s\)", 30, mark)
        assert runner.child("goshop_payments.consumer") != wedged
        assert _settled(gw, auth, order["id"]) == "paid"
        # Caught up: live again, and restarted once, not again and again.
        assert poll_until(lambda: _not_live(health) is None, timeout=10)
        assert len(re.findall(r"payments-consumer failed /live", runner.log[mark:])) == 1, runner.log[mark:]
    finally:
        runner.kill()


# -- a worker that does not answer at all ---------------------------------------------


def test_a_worker_that_stops_answering_its_live_is_killed_and_restarted(tmp_path, monkeypatch):
    # A stopped process: its socket still accepts connections, nothing answers,
    # and it cannot act on SIGTERM; only the SIGKILL after the grace ends it.
    monkeypatch.setattr(supervisor, "LIVE_INTERVAL", 0.2)
    monkeypatch.setattr(supervisor, "LIVE_TIMEOUT", 0.5)
    monkeypatch.setattr(supervisor, "STOP_GRACE", 0.5)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    # Python's file server: 200 for the directory listing at /, ready and live.
    spec = Spec("worker", "http.server", ("--bind", "127.0.0.1", str(port)), ready_url=url, live_url=url)
    output = io.StringIO()
    console = Console(output, "console", color=False, names=["worker"])
    shop = Supervisor([spec], env=dict(os.environ), cwd=tmp_path, console=console, run_dir=tmp_path)
    stop = threading.Event()
    loop = threading.Thread(target=shop.run, args=(stop.is_set,), name="supervisor")

    def said(pattern: str) -> None:
        found = poll_until(lambda: re.search(pattern, output.getvalue()), timeout=15)
        assert found, f"no {pattern!r} in:\n{output.getvalue()}"

    shop.start_all()
    loop.start()
    try:
        said(r"worker ready in ")
        hung = shop.pids()["worker"]
        os.kill(hung, signal.SIGSTOP)
        said(r"ERROR worker failed /live: no answer within 0\.5 s; restarting\n")
        said(rf"ERROR worker killed by SIGKILL \(pid {hung}, up [\d.]+ s\); restarting in 1 s")
        said(r"worker is back \(ready in [\d.]+ s\)")
        assert shop.pids()["worker"] != hung
    finally:
        stop.set()
        loop.join(5)
        shop.stop_all()


# -- EventConsumer.stalled, in-process -------------------------------------------------

SCHEMA = "consumer_stall_test"
METADATA = sa.MetaData(schema=SCHEMA)
INBOX = inbox_table(METADATA)
LIMIT = 0.5


@pytest.fixture
def scratch(settings) -> Iterator[sa.Engine]:
    # A short statement timeout: the wedged batch is tried again every 1.3 s, not 6 s.
    with scratch_schema(with_settings(settings, db_statement_timeout_ms=300), METADATA) as engine:
        yield engine


def test_stalled_says_why_while_a_lock_wedges_the_consumer_and_nothing_once_it_caught_up(own_broker, scratch):
    kafka = make_consumer(own_broker.bootstrap, f"stall-test-{uuid.uuid4().hex[:8]}", [ORDERS_TOPIC])
    dead_letters = DeadLetters("stall-test", make_producer(own_broker.bootstrap))
    # The handler does nothing: the inbox row is the batch's first statement, and the lock's.
    worker = EventConsumer("stall-test", scratch, kafka, INBOX, lambda _db, _events: None, dead_letters=dead_letters)
    thread = threading.Thread(target=worker.run, kwargs={"poll_timeout_ms": 100}, name="stall-test")
    with scratch.connect() as lock:
        lock.execute(sa.text(f"LOCK TABLE {SCHEMA}.inbox IN ACCESS EXCLUSIVE MODE"))
        body = ORDER_CREATED.build(
            dt.datetime.now(dt.UTC),
            order_id=uuid.uuid4(),
            user_id=uuid.uuid4(),
            amount_cents=19901,
            currency="RUB",
            status="new",
        )
        producer = make_producer(own_broker.bootstrap)
        headers = event_headers(ORDER_CREATED.name, body["event_id"])
        producer.send(ORDERS_TOPIC, value=json.dumps(body).encode(), headers=headers)
        producer.flush(10)
        producer.close(timeout=5)
        thread.start()
        try:
            wedged = re.compile(rf"no progress for \d+ s \({HOLDING}\)")
            assert poll_until(lambda: wedged.fullmatch(worker.stalled(LIMIT) or ""), timeout=30), worker.stalled(LIMIT)
            lock.rollback()
            assert poll_until(lambda: worker.stats.applied == 1, timeout=10)
            # The batch is counted as it commits, its progress noted once the
            # poll's batches are done: a moment later.
            assert poll_until(lambda: worker.stalled(LIMIT) is None, timeout=5)
            # Caught up, it stays so past the limit: standing caught up is progress.
            assert poll_until(lambda: worker.stalled(LIMIT), timeout=2 * LIMIT) is None
        finally:
            worker.stop()
            thread.join(10)
