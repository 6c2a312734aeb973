"""The users service over HTTP on waitress, against a bare WSGI app on the same
waitress settings and the same load.

    .venv/bin/python bench/bench_users_http.py

Figures: GET /v1/users/me (valid access token), GET /live, POST /v1/users/login
with a wrong password (argon2 verify + throttle bookkeeping in Postgres).
Rounds of every target are interleaved so that drift on a noisy machine hits
them all alike; each figure is the median over rounds.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

from goshop_devtools.settings import settings_of

ROUNDS = 3
ROUND_SECONDS = 1.25  # per target per round: ~3.75 s measured per target
WARMUP_SECONDS = 0.3
CONNECTIONS = 8
PASSWORD = "correct horse battery"  # noqa: S105 (a throwaway account in a throwaway database)


def build_users_app(database_url: str, dev_dir: str):
    from goshop_users import make_app

    settings = settings_of(
        {},
        environ={
            "GOSHOP_ENV": "test",
            "GOSHOP_DATABASE_URL": database_url,
            "GOSHOP_DEV_DIR": dev_dir,
            "GOSHOP_LOG_LEVEL": "WARNING",
            "GOSHOP_LOGIN_MAX_FAILURES_PER_EMAIL_AND_CLIENT": "1000000000",
            "GOSHOP_LOGIN_MAX_FAILURES_PER_CLIENT": "1000000000",
            "GOSHOP_LOGIN_MAX_FAILURES_PER_EMAIL": "1000000000",
        },
    )
    app = make_app(settings)
    h.quiet_logging()  # make_app sets the goshop logger's level from settings
    return app, settings


def access_token(port: int) -> tuple[str, str]:
    """Register a fresh account and log in through the app; returns (email, token)."""
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    status, body = h.call(port, "POST", "/v1/users/register", {"email": email, "password": PASSWORD})
    assert status == 201, (status, body)
    status, body = h.call(port, "POST", "/v1/users/login", {"email": email, "password": PASSWORD})
    assert status == 200, (status, body)
    return email, body["access_token"]


def main() -> None:
    h.quiet_logging()
    started = time.perf_counter()
    print(h.background_load(), flush=True)
    with tempfile.TemporaryDirectory(prefix="goshop-bench-dev-") as dev_dir, h.migrated_postgres() as url:
        app, settings = build_users_app(url, dev_dir)
        try:
            with h.serve(h.bare_wsgi_app) as bare_port, h.serve(app) as app_port:
                email, token = access_token(app_port)
                wrong_login = json.dumps({"email": email, "password": "not the password"}).encode()
                targets = {
                    "bare-waitress": dict(port=bare_port, method="GET", path="/"),
                    "GET /v1/users/me": dict(
                        port=app_port, method="GET", path="/v1/users/me", headers={"Authorization": f"Bearer {token}"}
                    ),
                    "GET /live": dict(port=app_port, method="GET", path="/live"),
                    "POST /v1/users/login (wrong password)": dict(
                        port=app_port, method="POST", path="/v1/users/login", body=wrong_login, expect_status=401
                    ),
                }
                print(
                    f"waitress threads={h.SERVER_THREADS}, client connections={CONNECTIONS}, "
                    f"{ROUNDS} interleaved rounds x {ROUND_SECONDS}s per target; medians over rounds; "
                    f"argon2 t={settings.argon2_time_cost} m={settings.argon2_memory_kib}KiB "
                    f"p={settings.argon2_parallelism}",
                    flush=True,
                )
                print(h.SHARED_PROCESS_NOTE, flush=True)
                for spec in targets.values():
                    h.load(connections=CONNECTIONS, duration=WARMUP_SECONDS, **spec)
                rounds: dict[str, list[h.LoadResult]] = {name: [] for name in targets}
                machine = h.MachineLoad(expected_other=0.3).start()
                for _ in range(ROUNDS):
                    for name, spec in targets.items():
                        rounds[name].append(h.load(connections=CONNECTIONS, duration=ROUND_SECONDS, **spec))
                print(machine.summary(), flush=True)
        finally:
            app.registry.dbengine.dispose()

    results = {name: h.median_result(values) for name, values in rounds.items()}
    base = results["bare-waitress"]
    print()
    for name, result in results.items():
        rps_rounds = ", ".join(f"{r.rps:.0f}" for r in rounds[name])
        print(
            f"{name}: {result.requests} requests in {result.seconds:.1f}s; req/s per round [{rps_rounds}]; "
            f"latency p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms; "
            f"cores busy: this process {result.own_cores:.2f}, machine {result.machine_cores:.2f}"
        )
    print()
    for name, result in results.items():
        if name == "bare-waitress":
            continue
        h.report(name, result.rps, "req/s", "bare-waitress", base.rps)
    for name, result in results.items():
        if name == "bare-waitress":
            continue
        h.report(f"{name} CPU/req", result.cpu_us_per_request, "us", "bare-waitress", base.cpu_us_per_request)
    print(f"\ntotal wall time {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
