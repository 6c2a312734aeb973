"""argon2id as goshop_users.passwords.Passwords uses it, with the default settings.

    .venv/bin/python bench/bench_passwords.py

Baseline: one hash, single-threaded. Figures: verify of a wrong password for an
existing hash, and verify for an unknown user (``verify(None, pw)``, which
checks against the dummy hash). Their ratio should be ~1.0: that is what makes
an unknown-email login cost the same as a wrong password. Then verify
throughput with 2 threads against 1 thread (p=1 and the GIL released: ~2x on
2 cores).
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

from goshop_devtools.settings import settings_of
from goshop_users.passwords import Passwords

ROUNDS = 5
OPS_PER_ROUND = 6
THROUGHPUT_ROUNDS = 3
THROUGHPUT_SECONDS = 1.5
PASSWORD = "correct horse battery"  # noqa: S105 (a throwaway account in a throwaway database)
WRONG = "not the password"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_per_op(operation, count: int) -> float:
    """Seconds per call, averaged over ``count`` back-to-back calls."""
    started = time.perf_counter()
    for _ in range(count):
        operation()
    return (time.perf_counter() - started) / count


def throughput(operation, threads: int, seconds: float) -> tuple[float, float, float]:
    """(ops/s, CPU seconds per op, cores busy on the whole machine) with
    ``threads`` threads calling back to back."""
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)
    deadline: list[float] = []

    def worker(slot: int) -> None:
        barrier.wait()
        end = deadline[0]
        while time.perf_counter() < end:
            operation()
            counts[slot] += 1

    workers = [threading.Thread(target=worker, args=(slot,)) for slot in range(threads)]
    for thread in workers:
        thread.start()
    cpu_before = cpu_seconds()
    machine_before = h.machine_busy_seconds()
    started = time.perf_counter()
    deadline.append(started + seconds)
    barrier.wait()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - started
    total = sum(counts)
    machine = (h.machine_busy_seconds() - machine_before) / elapsed
    return total / elapsed, (cpu_seconds() - cpu_before) / total, machine


def main() -> None:
    h.quiet_logging()
    started = time.perf_counter()
    print(h.background_load(), flush=True)
    machine = h.MachineLoad().start()
    settings = settings_of({}, environ={})
    passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)
    stored = passwords.hash(PASSWORD)
    assert passwords.verify(stored, PASSWORD) is True
    assert passwords.verify(stored, WRONG) is False
    assert passwords.verify(None, PASSWORD) is False
    print(
        f"argon2id t={settings.argon2_time_cost} m={settings.argon2_memory_kib}KiB p={settings.argon2_parallelism}; "
        f"{os.cpu_count()} CPUs; {ROUNDS} interleaved rounds x {OPS_PER_ROUND} ops; medians over rounds",
        flush=True,
    )

    operations = {
        "hash": lambda: passwords.hash(PASSWORD),
        "verify wrong password": lambda: passwords.verify(stored, WRONG),
        "verify unknown user": lambda: passwords.verify(None, WRONG),
    }
    for operation in operations.values():
        operation()  # warm up
    per_op: dict[str, list[float]] = {name: [] for name in operations}
    for _ in range(ROUNDS):
        for name, operation in operations.items():
            per_op[name].append(time_per_op(operation, OPS_PER_ROUND))
    ms = {name: h.median(values) * 1000 for name, values in per_op.items()}
    for name, values in per_op.items():
        print(f"{name}: per round [{', '.join(f'{v * 1000:.1f}' for v in values)}] ms/op")

    verify = operations["verify wrong password"]
    by_threads: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for _ in range(THROUGHPUT_ROUNDS):
        for threads in by_threads:
            by_threads[threads].append(throughput(verify, threads, THROUGHPUT_SECONDS))
    ops = {threads: h.median([r[0] for r in values]) for threads, values in by_threads.items()}
    cpu_ms = {threads: h.median([r[1] for r in values]) * 1000 for threads, values in by_threads.items()}
    for threads, values in by_threads.items():
        own = ops[threads] * cpu_ms[threads] / 1000
        machine_cores = h.median([r[2] for r in values])
        print(
            f"verify, {threads} thread(s): per round [{', '.join(f'{r[0]:.1f}' for r in values)}] ops/s; "
            f"CPU {cpu_ms[threads]:.1f} ms/op; cores busy: this process {own:.2f}, machine {machine_cores:.2f}"
        )

    print(machine.summary())
    print()
    h.report("verify wrong password", ms["verify wrong password"], "ms/op", "hash", ms["hash"])
    h.report("verify unknown user", ms["verify unknown user"], "ms/op", "hash", ms["hash"])
    h.report(
        "verify unknown user",
        ms["verify unknown user"],
        "ms/op",
        "verify wrong password",
        ms["verify wrong password"],
    )
    h.report("verify 2 threads", ops[2], "ops/s", "verify 1 thread", ops[1])
    print(f"\ntotal wall time {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
