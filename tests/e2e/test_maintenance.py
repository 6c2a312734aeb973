"""The maintenance worker as its own process: it deletes what has expired,
serves /live, /ready and /metrics with what it deleted, waits out a missing
database without a traceback, stops cleanly on SIGTERM, and ``--once`` runs
one pass and exits."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from goshop_devtools.postgres import free_port
from goshop_devtools.waiting import poll_until
from tests.e2e.conftest import ROOT, Http, spawn, stop, wait_for
from tests.e2e.test_workers import scrape

TABLES = {
    "users.login_failures",
    "users.sessions",
    "orders.idempotency_keys",
    "orders.outbox",
    "orders.inbox",
    "payments.outbox",
    "payments.inbox",
}


@pytest.fixture
def maintenance_env(child_env):
    return {**child_env, "GOSHOP_RETENTION_INTERVAL_SECONDS": "1", "GOSHOP_RETENTION_BATCH_SIZE": "7"}


def add_inbox_rows(engine, schema: str, count: int, age: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                f'INSERT INTO {schema}.inbox (event_id, event_type, topic, partition, "offset", received_at)'
                " SELECT gen_random_uuid(), 'e', 't', 0, n, now() - CAST(:age AS interval)"
                " FROM generate_series(1, :count) AS n"
            ),
            {"count": count, "age": age},
        )


def run_once(env: dict) -> subprocess.CompletedProcess:
    """``python -m goshop_maintenance --once``, as a CronJob runs it."""
    return subprocess.run(
        [sys.executable, "-m", "goshop_maintenance", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def inbox_count(engine, schema: str) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {schema}.inbox")).scalar_one()


def test_the_worker_deletes_expired_rows_and_serves_live_ready_and_metrics(clean_db, maintenance_env, tmp_path):
    add_inbox_rows(clean_db, "orders", 20, "31 days")
    add_inbox_rows(clean_db, "orders", 3, "29 days")
    port = free_port()
    process = spawn(["-m", "goshop_maintenance", "--port", str(port)], maintenance_env, tmp_path / "maintenance.log")
    try:
        wait_for(port, "/ready", process=process)
        assert Http(port).request("GET", "/live")[0] == 200
        deadline = time.monotonic() + 30
        while inbox_count(clean_db, "orders") != 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert inbox_count(clean_db, "orders") == 3

        # The pass goes table by table: orders.inbox done is not the pass done.
        def after_a_whole_pass():
            metrics = scrape(port)
            done = {s.labels["table"] for s in metrics["goshop_retention_last_success_timestamp_seconds"]}
            return metrics if done == TABLES else None

        metrics = poll_until(after_a_whole_pass, 30)
        assert metrics is not None, "no whole retention pass within 30 s"
    finally:
        code = stop(process, signal.SIGTERM)
    log = (tmp_path / "maintenance.log").read_text()
    assert code == 0, log[-2000:]

    deleted = {s.labels["table"]: s.value for s in metrics["goshop_retention_deleted_total"]}
    assert set(deleted) == TABLES
    assert deleted["orders.inbox"] == 20
    assert set(deleted.values()) == {0, 20}
    last = {s.labels["table"]: s.value for s in metrics["goshop_retention_last_success_timestamp_seconds"]}
    assert set(last) == TABLES
    assert all(time.time() - 60 < value <= time.time() for value in last.values())
    assert {s.labels["service"] for s in metrics["goshop_db_pool_size"]} == {"maintenance"}
    assert '"table": "orders.inbox", "deleted": 20' in log


def test_once_runs_one_pass_and_exits_0(clean_db, maintenance_env):
    add_inbox_rows(clean_db, "payments", 15, "40 days")
    add_inbox_rows(clean_db, "payments", 2, "1 day")

    result = run_once(maintenance_env)

    assert result.returncode == 0, result.stderr[-2000:]
    assert inbox_count(clean_db, "payments") == 2


def test_once_without_a_database_exits_1_without_a_traceback(maintenance_env):
    env = {**maintenance_env, "GOSHOP_DATABASE_URL": f"postgresql://goshop:goshop@127.0.0.1:{free_port()}/goshop"}

    result = run_once(env)

    assert result.returncode == 1
    assert "database unavailable" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_database_the_worker_says_so_on_ready_and_keeps_trying_quietly(maintenance_env, tmp_path):
    env = {**maintenance_env, "GOSHOP_DATABASE_URL": f"postgresql://goshop:goshop@127.0.0.1:{free_port()}/goshop"}
    port = free_port()
    process = spawn(["-m", "goshop_maintenance", "--port", str(port)], env, tmp_path / "maintenance.log")
    try:
        wait_for(port, "/live", process=process)
        time.sleep(4)  # a few retries
        status, _, body = Http(port).request("GET", "/ready")
        assert (status, body) == (503, {"error": "not ready: database"})
        assert process.poll() is None, "the worker must wait for the database, not exit"
    finally:
        code = stop(process, signal.SIGTERM)
    log = (tmp_path / "maintenance.log").read_text()
    assert code == 0, log[-2000:]
    assert "Traceback" not in log
    assert log.count("database unavailable") == 1, log[-2000:]


def test_a_traced_pass_is_a_trace_per_table_with_its_deletes_inside(clean_db, maintenance_env):
    from tests.otlp import otlp_receiver

    add_inbox_rows(clean_db, "payments", 15, "40 days")
    with otlp_receiver() as (receiver, port):
        env = {**maintenance_env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
        result = run_once(env)
        assert result.returncode == 0, result.stderr[-2000:]
        [root] = receiver.find(name="retention payments.inbox")
        spans = receiver.trace(root.trace_id)
    assert root.service == "goshop-maintenance"
    assert (root.parent_id, root.attributes["goshop.retention.deleted"]) == (None, 15)
    deletes = [s for s in spans if s.kind == "client" and s.name.startswith("DELETE")]
    # Batches of 7: 7, 7, 1.
    assert len(deletes) == 3
    assert {s.parent_id for s in deletes} == {root.span_id}
