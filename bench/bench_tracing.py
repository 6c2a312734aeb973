"""What tracing costs: in-process ``GET /v1/users/me`` and ``POST /v1/orders``
with tracing off (the code as shipped, no OTLP endpoint) against the same
code before tracing existed, and with tracing on.

    .venv/bin/python bench/bench_tracing.py          # BENCH_ROUNDS=40, BENCH_BASELINE_REF=<commit>

Four builds, each in a process of its own (the tracer provider and the
instrumentations are per process), all started first and then driven in
turn, one short batch each per round, so that whatever else the box does
falls on every build alike:

- **no hooks**: the source of the commit before
  ``goshop_common/observability/tracing.py`` was added (``git archive``, on
  ``PYTHONPATH`` ahead of the editable install), or ``BENCH_BASELINE_REF``;
- **off**: this tree, no ``OTEL_EXPORTER_OTLP_ENDPOINT``;
- **on**: this tree, exporting over OTLP/HTTP to a receiver in this process
  that accepts and drops the spans;
- **on, none sampled**: the same with ``OTEL_TRACES_SAMPLER=parentbased_traceidratio``
  at 0: instrumented, but no request kept.

Each child builds the users and orders apps as their entry points do, on one
migrated PostgreSQL, logs as a service does (JSON lines, written by the
background writer, to /dev/null), and calls the WSGI apps directly (no
sockets): the figure is CPU per request of the whole child (its exporter
thread included), the median over the rounds, and the median and quartiles of
each round's ratio to the baseline's batch run just before or after it.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
if sys.argv[1:2] != ["--child"]:
    # A child imports goshop from its build: the baseline's PYTHONPATH, else
    # the editable install (this tree).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "40"))
# Requests per batch: about a tenth of a second of CPU each.
BATCH = {"me": 400, "orders": 60}
WARM_UP = 200
TRACING_MODULE = "goshop_common/observability/tracing.py"
GIT = shutil.which("git") or "git"


# --- the child: one build, one round ---------------------------------------------


def child(database_url: str, dev_dir: str) -> None:
    import webob
    from cryptography.hazmat.primitives import serialization

    from goshop_common.observability import logs
    from goshop_devtools.settings import settings_of
    from goshop_orders import make_app as orders_app
    from goshop_users import make_app as users_app

    logs.configure("INFO")
    logs.write_in_background()
    environ = {"GOSHOP_ENV": "test", "GOSHOP_DATABASE_URL": database_url, "GOSHOP_DEV_DIR": dev_dir}
    users = users_app(settings_of({}, environ=environ, service="users"))
    key = Path(dev_dir) / "users-public.pem"
    key.write_bytes(
        users.registry.signing_key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    orders = orders_app(settings_of({}, environ={**environ, "GOSHOP_JWT_PUBLIC_KEY_FILE": str(key)}, service="orders"))

    def call(app, method, path, body=None, headers=None, expect=200):
        request = webob.Request.blank(path, method=method, headers=headers or {}, remote_addr="127.0.0.1")
        if body is not None:
            request.body = json.dumps(body).encode()
            request.content_type = "application/json"
        response = request.get_response(app)
        assert response.status_code == expect, (path, response.status, response.text[:200])
        return response

    account = {"email": f"bench-{os.getpid()}-{time.time_ns()}@example.com", "password": "long enough password"}
    call(users, "POST", "/v1/users/register", account, expect=201)
    token = json.loads(call(users, "POST", "/v1/users/login", account).body)["access_token"]
    auth = {"Authorization": f"Bearer {token}"}

    endpoints = {
        "me": (users, "GET", "/v1/users/me", None, 200),
        "orders": (orders, "POST", "/v1/orders", {"amount_cents": 19901}, 201),
    }
    for app, method, path, body, expect in endpoints.values():
        for _ in range(WARM_UP):
            call(app, method, path, body, auth, expect)
    print(json.dumps({"ready": True}), flush=True)
    # One batch per command ("me 300"), answered with its CPU per request:
    # the parent drives every build's child in turn, so that what else the
    # box is doing falls on all of them alike.
    # Traced, the batch's spans are exported before its CPU is read: their
    # encoding and sending are part of what tracing costs.
    from opentelemetry import trace

    flush = getattr(trace.get_tracer_provider(), "force_flush", lambda: None)
    for line in sys.stdin:
        endpoint, count = line.split()
        app, method, path, body, expect = endpoints[endpoint]
        cpu = time.process_time()
        for _ in range(int(count)):
            call(app, method, path, body, auth, expect)
        flush()
        print(json.dumps({"us": (time.process_time() - cpu) / int(count) * 1e6}), flush=True)


# --- the parent ------------------------------------------------------------------


def baseline_ref() -> str:
    ref = os.environ.get("BENCH_BASELINE_REF")
    if ref:
        return ref
    added = subprocess.run(
        [GIT, "log", "--diff-filter=A", "--format=%H", "--", TRACING_MODULE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not added:
        raise SystemExit(f"{TRACING_MODULE} is not committed yet: set BENCH_BASELINE_REF")
    return f"{added[-1]}^"


def export_tree(ref: str, into: Path) -> None:
    """The goshop packages of ``ref``, without touching the repository's worktrees."""
    archive = subprocess.run([GIT, "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        members = [m for m in tar.getmembers() if m.name.split("/")[0].startswith("goshop_")]
        tar.extractall(into, members=members, filter="data")


@contextlib.contextmanager
def otlp_sink():
    """Accepts OTLP/HTTP exports and drops them; yields (port, counter)."""
    received = {"requests": 0, "bytes": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received["requests"] += 1
            received["bytes"] += len(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()


@contextlib.contextmanager
def migrated_shop_database():
    from goshop_devtools.postgres import EmbeddedPostgres, free_port

    tmp = Path(tempfile.mkdtemp(prefix="goshop-bench-tracing-"))
    postgres = EmbeddedPostgres(tmp / "data", free_port(), durable=False)
    try:
        postgres.start()
        from tests.support import create_roles

        create_roles(postgres.url)
        for service in ("users", "orders"):
            migrate = [sys.executable, "-m", f"goshop_{service}.migrate", "--database-url", postgres.url, "up"]
            subprocess.run(migrate, cwd=ROOT, check=True, capture_output=True)
        yield postgres.url, tmp
    finally:
        postgres.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


class Child:
    """One build's process, set up once and driven batch by batch."""

    def __init__(self, build: str, database_url: str, dev_dir: Path, baseline: Path, otlp_port: int):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GOSHOP_", "OTEL_"))}
        if build == "no hooks":
            env["PYTHONPATH"] = str(baseline)
        if build.startswith("on"):
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{otlp_port}"
        if build == "on, none sampled":
            env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
            env["OTEL_TRACES_SAMPLER_ARG"] = "0"
        dev_dir.mkdir()
        self.build = build
        # Not from the repository's root: "" on sys.path would import this tree.
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child", database_url, str(dev_dir)],
            cwd=dev_dir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._answer()

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.build}: the child died (exit {self.process.wait()})")
        return json.loads(line)

    def batch(self, endpoint: str, count: int) -> float:
        self.process.stdin.write(f"{endpoint} {count}\n")
        self.process.stdin.flush()
        return self._answer()["us"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def main() -> None:
    print(h.background_load(), flush=True)
    ref = baseline_ref()
    builds = ("no hooks", "off", "on", "on, none sampled")
    results: dict[str, dict[str, list[float]]] = {build: {"me": [], "orders": []} for build in builds}
    with tempfile.TemporaryDirectory(prefix="goshop-bench-baseline-") as baseline, otlp_sink() as (port, received):
        export_tree(ref, Path(baseline))
        check = subprocess.run(
            [sys.executable, "-c", "import goshop_common; print(goshop_common.__file__)"],
            env={**os.environ, "PYTHONPATH": baseline},
            cwd=baseline,
            capture_output=True,
            text=True,
            check=True,
        )
        assert check.stdout.startswith(baseline), f"the baseline build is not the one imported: {check.stdout}"
        print(f"no hooks = {ref} ({ROUNDS} rounds, builds interleaved)", flush=True)
        with migrated_shop_database() as (url, tmp):
            children = [Child(build, url, tmp / f"dev-{n}", Path(baseline), port) for n, build in enumerate(builds)]
            # The children are other processes: about one core of them, and Postgres.
            load = h.MachineLoad(expected_other=1.4).start()
            try:
                for round_ in range(ROUNDS):
                    # Each round in another order: the orders table grows with
                    # every order, which must not always slow the same build.
                    order = children[round_ % len(children) :] + children[: round_ % len(children)]
                    for endpoint, count in BATCH.items():
                        for child_ in order:
                            results[child_.build][endpoint].append(child_.batch(endpoint, count))
            finally:
                for child_ in children:
                    child_.close()
            print(load.summary())
        print(f"exported while on: {received['requests']} OTLP requests, {received['bytes'] / 1e6:.1f} MB")

    for key, name in (("me", "GET /v1/users/me"), ("orders", "POST /v1/orders")):
        base = statistics.median(results["no hooks"][key])
        for build in builds[1:]:
            figure = statistics.median(results[build][key])
            h.report(f"{name}, tracing {build} (CPU/request)", figure, "us", "no hooks", base)
            # Each round's batches ran back to back: their ratios, paired, show the noise.
            ratios = sorted(r / b for r, b in zip(results[build][key], results["no hooks"][key], strict=True))
            low, _, high = statistics.quantiles(ratios, n=4)
            print(f"    paired by round: median {statistics.median(ratios):.3f}, quartiles {low:.2f}-{high:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3])
    else:
        main()
