"""Short transactions through goshop's engine (a pooled connection is pinged
only after it sat idle) against the same engine with ``pool_pre_ping`` (a
ping on every checkout).

    .venv/bin/python bench/bench_pool.py

Each transaction is what a small request does: check out, one SELECT of a
row by primary key, commit, check in; one thread, so the figure is the round
trips. Medians of 5 interleaved rounds; CPU is this process's (the client
side of each round trip).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

from goshop_common.db.session import make_engine
from goshop_devtools.settings import settings_of

ROUNDS = 5
TRANSACTIONS = 2000


def run(engine: sa.Engine) -> tuple[float, float]:
    """(transactions per second, client CPU microseconds per transaction)."""
    query = sa.text("SELECT id FROM users.users WHERE id = '00000000-0000-0000-0000-000000000000'")
    wall, cpu = time.perf_counter(), h._own_cpu_seconds()
    for _ in range(TRANSACTIONS):
        with engine.begin() as connection:
            connection.execute(query).first()
    wall, cpu = time.perf_counter() - wall, h._own_cpu_seconds() - cpu
    return TRANSACTIONS / wall, cpu / TRANSACTIONS * 1e6


def main() -> None:
    print(h.background_load(), flush=True)
    with tempfile.TemporaryDirectory(prefix="goshop-bench-dev-") as dev_dir, h.migrated_postgres() as url:
        settings = settings_of(
            {}, environ={"GOSHOP_ENV": "test", "GOSHOP_DATABASE_URL": url, "GOSHOP_DEV_DIR": dev_dir}
        )
        engines = {
            "goshop engine (ping after idle)": make_engine(settings, pool_size=1, max_overflow=0),
            "pool_pre_ping on every checkout": make_engine(settings, pool_size=1, max_overflow=0, pool_pre_ping=True),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
        try:
            for engine in engines.values():
                run(engine)  # warm-up: connect, plan caches
            for _ in range(ROUNDS):
                for name, engine in engines.items():
                    results[name].append(run(engine))
        finally:
            for engine in engines.values():
                engine.dispose()
    print(f"{ROUNDS} interleaved rounds of {TRANSACTIONS} transactions, one thread; medians")
    base_name = "pool_pre_ping on every checkout"
    base_tps = statistics.median(r[0] for r in results[base_name])
    base_cpu = statistics.median(r[1] for r in results[base_name])
    name = "goshop engine (ping after idle)"
    h.report(f"{name} transactions", statistics.median(r[0] for r in results[name]), "tx/s", base_name, base_tps)
    h.report(f"{name} client CPU/tx", statistics.median(r[1] for r in results[name]), "us", base_name, base_cpu)


if __name__ == "__main__":
    main()
