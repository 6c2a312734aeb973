"""Helpers the benchmarks share: a throwaway Postgres, waitress in a thread,
a closed-loop HTTP load generator, medians and one-line reports.

The load generator and the server run in the same process (and share its GIL),
so absolute req/s are lower than with an external client such as wrk; compare
ratios against a baseline measured the same way in the same run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import importlib
import json
import logging
import os
import resource
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import waitress
from waitress import wasyncore

from goshop_devtools.postgres import EmbeddedPostgres, free_port
from tests.support import create_roles

SERVER_THREADS = 4
SHARED_PROCESS_NOTE = (
    "note: load generator and waitress share one process (and its GIL); "
    "CPU/req = getrusage(RUSAGE_SELF) user+sys of both, per request"
)


def quiet_logging() -> None:
    """WARNING for goshop and waitress; ERROR for waitress.queue, whose
    "Task queue depth" line is a WARNING logged per queued request."""
    for name in ("goshop", "waitress", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


# --- machine load -----------------------------------------------------------


def machine_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class MachineLoad:
    """How busy the machine was between start() and summary(): this process
    versus everything else (Postgres, and any other job sharing the box)."""

    def __init__(self, expected_other: float = 0.0):
        """``expected_other``: cores other processes may use without a warning
        (Postgres serving the benchmark)."""
        self.expected_other = expected_other

    def start(self) -> MachineLoad:
        self._wall = time.perf_counter()
        self._busy = machine_busy_seconds()
        self._own = _own_cpu_seconds()
        return self

    def summary(self) -> str:
        wall = time.perf_counter() - self._wall
        busy = (machine_busy_seconds() - self._busy) / wall
        own = (_own_cpu_seconds() - self._own) / wall
        other = max(0.0, busy - own)
        line = (
            f"machine CPU during the run: {busy:.2f} of {os.cpu_count()} cores busy; this process {own:.2f}, "
            f"other processes {other:.2f} (Postgres, and anything else on the box)"
        )
        if other > self.expected_other + 0.2:
            line += "  <-- WARNING: another job shared the CPU; figures are unreliable"
        return line


def background_load(seconds: float = 1.0) -> str:
    """Sample the machine while this process sleeps: CPU used by others.
    Anything well above 0 means the figures below are contaminated."""
    before = machine_busy_seconds()
    time.sleep(seconds)
    busy = (machine_busy_seconds() - before) / seconds
    warning = "  <-- WARNING: another job is using the CPU; figures are unreliable" if busy > 0.2 else ""
    return f"background load before the run: {busy:.2f} of {os.cpu_count()} cores busy{warning}"


# --- Postgres -------------------------------------------------------------


@contextlib.contextmanager
def migrated_postgres(service: str = "users") -> Iterator[str]:
    """A non-durable embedded Postgres in a temp dir with ``service``'s
    migrations applied; yields its URL and destroys it on exit."""
    migrate = importlib.import_module(f"goshop_{service}.migrate").main

    tmp = Path(tempfile.mkdtemp(prefix="goshop-bench-pg-"))
    postgres = EmbeddedPostgres(tmp / "data", free_port(), durable=False)
    try:
        postgres.start()
        # The migrations run as the migration role, which the roles bootstrap makes (as make run does).
        create_roles(postgres.url)
        if migrate(["--database-url", postgres.url, "up"]) != 0:
            raise RuntimeError("migrations failed")
        yield postgres.url
    finally:
        postgres.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


# --- waitress ---------------------------------------------------------------


@contextlib.contextmanager
def serve(app, threads: int = SERVER_THREADS) -> Iterator[int]:
    """Serve ``app`` on 127.0.0.1 in a daemon thread; yields the bound port."""
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        # Stop the workers first (they finish the task in hand), then close
        # every socket from inside the loop thread: closing them from here
        # while the loop sits in select() fails there with EBADF.
        server.task_dispatcher.shutdown()
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map, ignore_all=True))
        thread.join(timeout=5)


def bare_wsgi_app(environ, start_response):
    """The baseline: a fixed JSON body, no framework."""
    body = b'{"status": "ok"}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def call(port: int, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
    """One request on a fresh connection; returns (status, decoded JSON or {})."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = None
        headers = dict(headers or {})
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else {})
    finally:
        connection.close()


# --- load generator ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    own_cores: float  # this process's CPU seconds per wall second (client + server)
    machine_cores: float  # the whole machine's, Postgres included


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def load(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    expect_status: int = 200,
    connections: int = 8,
    duration: float = 1.0,
) -> LoadResult:
    """Closed loop: ``connections`` threads, each with one keep-alive
    connection, send requests back to back for ``duration`` seconds.

    Every response must have ``expect_status``; otherwise AssertionError."""
    headers = dict(headers or {})
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    latencies: list[list[float]] = [[] for _ in range(connections)]
    bad: list[str] = []
    ready = threading.Barrier(connections + 1, timeout=30)
    start_at: list[float] = []

    def worker(slot: int) -> None:
        mine = latencies[slot]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            try:
                connection.connect()
            except Exception:
                ready.abort()  # release everyone else at the barrier
                raise
            ready.wait()
            deadline = start_at[0] + duration
            clock = time.perf_counter
            while clock() < deadline:
                sent = clock()
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                mine.append(clock() - sent)
                if response.status != expect_status:
                    bad.append(f"{response.status} {response.reason}")
                    break
                if response.will_close:
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        except Exception as exc:
            bad.append(repr(exc))
        finally:
            connection.close()

    workers = [threading.Thread(target=worker, args=(slot,), daemon=True) for slot in range(connections)]
    for thread in workers:
        thread.start()
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    machine_before = machine_busy_seconds()
    start_at.append(time.perf_counter())
    with contextlib.suppress(threading.BrokenBarrierError):  # a worker failed to connect: reported below
        ready.wait()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - start_at[0]
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    machine = machine_busy_seconds() - machine_before

    assert not bad, f"{method} {path}: expected {expect_status}, got {bad[:3]}"
    merged = sorted(value for mine in latencies for value in mine)
    assert merged, f"{method} {path}: no request completed"
    cpu = (usage_after.ru_utime - usage_before.ru_utime) + (usage_after.ru_stime - usage_before.ru_stime)
    return LoadResult(
        requests=len(merged),
        seconds=elapsed,
        rps=len(merged) / elapsed,
        p50_ms=_percentile(merged, 0.50) * 1000,
        p99_ms=_percentile(merged, 0.99) * 1000,
        cpu_us_per_request=cpu / len(merged) * 1e6,
        own_cores=cpu / elapsed,
        machine_cores=machine / elapsed,
    )


def median_result(results: list[LoadResult]) -> LoadResult:
    """Field-wise medians over rounds."""
    return LoadResult(
        requests=sum(r.requests for r in results),
        seconds=sum(r.seconds for r in results),
        rps=median([r.rps for r in results]),
        p50_ms=median([r.p50_ms for r in results]),
        p99_ms=median([r.p99_ms for r in results]),
        cpu_us_per_request=median([r.cpu_us_per_request for r in results]),
        own_cores=median([r.own_cores for r in results]),
        machine_cores=median([r.machine_cores for r in results]),
    )


# --- reporting --------------------------------------------------------------


def median(values) -> float:
    return statistics.median(values)


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def report(name: str, figure: float, unit: str, baseline_name: str, baseline_figure: float) -> None:
    ratio = figure / baseline_figure if baseline_figure else float("nan")
    print(
        f"{name}: {_fmt(figure)} {unit}  |  baseline {baseline_name}: {_fmt(baseline_figure)} {unit}  |  "
        f"ratio {ratio:.2f}",
        flush=True,
    )
