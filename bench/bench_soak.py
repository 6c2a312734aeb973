"""``make soak``: the shop as ``make run`` starts it, under ``make load`` for an
hour (``--time``, SOAK_TIME), with the chaos tier's faults injected at random
every few minutes, sampled every 10 s; then whether anything grows.

    .venv/bin/python bench/bench_soak.py --time 60m           # make soak
    .venv/bin/python bench/bench_soak.py --time 10m           # a quick run
    .venv/bin/python bench/bench_soak.py --charts-from DIR    # verdict and charts again from DIR's CSVs

The shop: the chaos tier's (tests/chaos/harness.py ``Shop``): ``goshop-dev
--no-reload`` on a data directory and free ports of its own, plus a second
replica of each worker, kept running as make run's supervisor keeps its own.

The load: ``make load``'s driver (goshop_devtools.load: Locust headless, then
its invariants through the gateway) in consecutive rounds of ``--round``
seconds (300 by default), each followed by its own invariant check, until the
time is up. Rounds, not one long run: make load's bounds (at most 10 min and
50 users a run) stay what they are, each round's customers are few enough to
be checked one by one, and a violation is tied to the round (and the faults)
it happened in. Between two rounds the load pauses while the check runs (a
few seconds: the charts show the gap).

The faults: every ``--fault-every`` seconds (180; each gap drawn from half to
one and a half times that), one of the chaos tier's (``Faults``) at random:
SIGKILL of a payments consumer, the outboxer and an orders-consumer replica;
the broker frozen for two consumer session timeouts; PostgreSQL restarted
(``pg_ctl restart -m fast``); a 20 s partition of the broker's or
PostgreSQL's port on loopback (root with nft or iptables only; else skipped
with the reason printed). A fault starts only while a round runs, not in its
first ``FAULT_LEAD`` seconds (its customers signing up: one that cannot
leaves the round) and with at least ``FAULT_MARGIN`` seconds left (its
orders settle before the round is checked); the next fault waits until
every worker is ready again.

The samples, every ``--interval`` seconds (10), by role, not by pid (a
process a fault restarts is sampled under the same name):

- per process (each of make run's services and workers, each replica, the
  runner, the broker): RSS in MB (VmRSS), open file descriptors
  (/proc/PID/fd), threads; PostgreSQL as one: its processes' PSS summed (RSS
  would count the shared buffers once per process), their descriptors, and
  its process count as ``threads``;
- PostgreSQL client connections per role (pg_stat_activity by usename, the
  soak's own left out), and each process's connections to the broker
  (``broker_connections``, from /proc/net/tcp and its sockets);
- the outbox backlog: unpublished rows in orders.outbox and payments.outbox;
- consumer lag per group, two ways: ``consumer_lag`` from the broker (each
  partition's end offset, ListOffsets, minus the group's committed offset,
  OffsetFetch; Tansu answers both, but its end is short by up to a batch's
  records: goshop_common.messaging.broker_profiles), and
  ``consumer_lag_metrics``: what the group's live members report
  (goshop_consumer_lag on their /metrics: highwater minus position);
- the load's p99 over the last 10 s: Locust's own window (its
  ``--csv-full-history`` rows), empty between rounds;
- as context, the cores busy on the whole machine (/proc/stat) and in the
  shop's processes (their utime+stime).

The verdict: every round's make load invariants held, every fault was
injected and recovered from, and no series grows. Growth is judged after the
warm-up (``--warmup``: 10% of the run, at least 6 min, at most half of it,
by default; ``AUTO_WARMUP_SECONDS`` says why) on medians, so that a
fault's spike (a restart's fresh process, a lag while the broker is frozen)
does not decide it: the median of the first ``WINDOW_FRACTION`` of the
post-warm-up samples is the baseline, that of the last as many the figure,
and the series grows when the figure exceeds the baseline by more than
``--tolerance`` (10%) plus the series' small absolute slack (``SLACK``: a
count of 3 descriptors or 2 connections is not a 10% trend). Each series is
printed with both medians and their ratio. Two kinds are printed but do not
fail the soak: ``CONTEXT`` measures (the CPU, PostgreSQL's shared memory,
which fills up to shared_buffers), and ``KNOWN_GROWTH``, a growth whose cause
is established and said there. A 503 is forgiven (``admitted_server_errors``)
when every one of a round's server errors is a 503 and every failure Locust
timed fell within a fault's span plus ``FAULT_GRACE``: the shop's answer while
its database or broker is away; any other server error fails the round.

Written to ``--out`` (results/soak/<UTC time>/, git-ignored): samples.csv
(one row per sample, one column per series), faults.csv, rounds.csv, and one
PNG chart per series with the warm-up shaded and the faults marked.

Exit status: 0 when everything held, 1 when an invariant, a fault's recovery
or the growth rule failed, 2 when the soak could not run, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime as dt
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(ROOT))

import _harness as h  # noqa: E402
from bench_shop import descendants, pid_alive, proc_stat, socket_inodes, tcp_sockets  # noqa: E402

from goshop_devtools.load.__main__ import (  # noqa: E402
    MAX_SECONDS,
    Refused,
    check_invariants,
    print_stats,
    print_violations,
    run_locust,
)
from goshop_devtools.load.invariants import NO_5XX  # noqa: E402

INTERVAL = 10.0
ROUND_SECONDS = 300
FAULT_EVERY = 180.0
# A fault starts only while the round has this long left: the longest fault
# (a 20 s partition) plus the workers' return, before the round is checked.
FAULT_MARGIN = 60.0
# Nor in a round's first seconds, while its customers register and log in: a
# customer whose sign-up fails leaves the round (the locustfile's StopUser).
FAULT_LEAD = 30.0
USERS = 20
SPAWN_RATE = 5.0
SETTLE_SECONDS = 60.0
WARMUP = "auto"
# The automatic warm-up: a tenth of the run, and at least until every Kafka
# client has refreshed its metadata once (kafka-python's metadata_max_age_ms,
# 5 min), when each consumer opens the connection it then keeps (2 -> 3 each,
# seen at 300 s in a quick soak); at most half the run.
AUTO_WARMUP_SHARE = 0.10
AUTO_WARMUP_SECONDS = 360.0
TOLERANCE = 0.10
WINDOW_FRACTION = 0.2
MIN_WINDOW = 3
# What a series may grow by besides the tolerance, by measure: counts this
# small are noise, not a trend (one more connection, a log file reopened).
SLACK = {
    "rss_mb": 2.0,
    "fds": 3.0,
    "threads": 2.0,
    "pg_connections": 2.0,
    "broker_connections": 2.0,
    "outbox_backlog": 50.0,
    "consumer_lag": 50.0,
    "consumer_lag_metrics": 50.0,
    "p99_ms": 25.0,
}
UNITS = {"rss_mb": "MB", "shared_mb": "MB", "p99_ms": "ms", "cpu_cores": "cores"}
# Measures sampled to read the others by, not judged: the machine's CPU (the
# shop's, everything's: a shared machine's other work moves the p99), and
# PostgreSQL's shared memory, which fills up to shared_buffers as the data
# is read and then stays (a bound of the configuration, not a leak).
# And the descriptors PostgreSQL keeps open on the files of its data
# directory: each process (the I/O workers, which read for every backend,
# the checkpointer, each backend) caches one per relation file it has
# touched, up to max_files_per_process (1,000), and a restart empties the
# caches, which then fill again as files are touched. Bounded by the files
# and the configuration, not a leak: its sockets and pipes stay ``fds``, judged.
CONTEXT = {"cpu_cores", "shared_mb", "file_fds"}
# Series that grow for a reason established and stated here: printed as such,
# not failing the soak.
KNOWN_GROWTH = {
    "rss_mb[broker]": (
        "make run's broker (Tansu 0.6, memory://) keeps every record it was sent, with neither "
        "retention (retention.ms is ignored) nor DeleteRecords (it closes the connection): "
        "it grows with the events, not with time (docs/performance.md, Soak)"
    ),
    "threads[broker]": (
        "make run's broker (Tansu 0.6) decodes every request and encodes every response on "
        "tokio's blocking pool (spawn_blocking, tansu-service/src/frame.rs), which grows to the "
        "most requests in flight at once (a frozen broker's release: every client's at once) and "
        "lets a thread go only after 10 s without work: under steady traffic the count is that "
        "high-water mark, and it falls back within 10 s of quiet (docs/performance.md, Soak)"
    ),
}
FAULT_KINDS = ("kill", "freeze-broker", "restart-postgres", "partition")
FAULT_COLOURS = {"kill": "tab:red", "freeze-broker": "tab:purple", "restart-postgres": "tab:orange"}
OUTBOXES = ("orders", "payments")
# The one server error a fault may cause: the shop's answer while PostgreSQL
# or the broker is away (as the chaos tier expects), within a fault's span
# plus this long.
ADMITTED_STATUS = "503"
FAULT_GRACE = 15.0

Sample = dict[str, float | None]


def log(line: str) -> None:
    print(f"soak {time.strftime('%H:%M:%S')} {line}", flush=True)


# -- durations -------------------------------------------------------------------


def duration_seconds(text: str) -> int:
    """``60m``, ``1h``, ``1h30m``, ``90s``, ``600`` as seconds (at least 1)."""
    found = re.fullmatch(r"\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*", text)
    if not found or not any(found.groups()):
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration such as 60m, 1h or 90s")
    hours, minutes, seconds = (int(part or 0) for part in found.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration of at least 1 s")
    return total


def warmup_seconds(text: str, total: float) -> float:
    """The warm-up: a share of the run (``10%``), a duration (``5m``), or
    ``auto``: the larger of AUTO_WARMUP_SHARE of the run and
    AUTO_WARMUP_SECONDS, at most half the run."""
    if text.strip() == "auto":
        return min(max(AUTO_WARMUP_SHARE * total, AUTO_WARMUP_SECONDS), total / 2)
    if text.strip().endswith("%"):
        share = float(text.strip()[:-1]) / 100
        if not 0 <= share < 1:
            raise argparse.ArgumentTypeError(f"--warmup {text!r}: a share from 0% to below 100%")
        return share * total
    return float(duration_seconds(text))


def round_lengths(total: int, longest: int = ROUND_SECONDS, shortest: int = 30) -> list[int]:
    """The load rounds that fill ``total`` seconds, none longer than
    ``longest``; a remainder shorter than ``shortest`` joins the last round
    when that stays within make load's bound, else is dropped."""
    rounds = [longest] * (total // longest)
    rest = total % longest
    if rest >= shortest or not rounds:
        rounds.append(max(rest, min(shortest, total)))
    elif rounds[-1] + rest <= MAX_SECONDS:
        rounds[-1] += rest
    return rounds


# -- the growth rule ---------------------------------------------------------------


def measure_of(series: str) -> str:
    """``rss_mb[gateway]`` -> ``rss_mb``."""
    return series.split("[", 1)[0]


@dataclasses.dataclass(frozen=True)
class Growth:
    """One series' verdict: the median of its first post-warm-up window
    (``first``, the baseline), of its last (``last``), and the limit ``last``
    may reach."""

    series: str
    samples: int
    first: float | None = None
    last: float | None = None
    limit: float | None = None

    @property
    def judged(self) -> bool:
        return self.first is not None and self.last is not None and self.limit is not None

    @property
    def grows(self) -> bool:
        return self.judged and self.last > self.limit  # type: ignore[operator]

    @property
    def ratio(self) -> float | None:
        if not self.judged or not self.first:
            return None
        return self.last / self.first  # type: ignore[operator]

    @property
    def fails(self) -> bool:
        """Grows, and is neither context nor a growth with a known cause."""
        return self.grows and measure_of(self.series) not in CONTEXT and self.series not in KNOWN_GROWTH

    @property
    def verdict(self) -> str:
        if not self.judged:
            return f"not judged ({self.samples} samples after the warm-up, {2 * MIN_WINDOW} needed)"
        if measure_of(self.series) in CONTEXT:
            return "context (not judged)" + (": grows" if self.grows else "")
        if self.grows and self.series in KNOWN_GROWTH:
            return "grows: known cause"
        return "GROWS" if self.grows else "ok"


def growth(
    series: str,
    points: Iterable[tuple[float, float | None]],
    warmup: float,
    tolerance: float = TOLERANCE,
    slack: float | None = None,
    window_fraction: float = WINDOW_FRACTION,
) -> Growth:
    """The growth rule over (elapsed seconds, value) points: the samples from
    ``warmup`` on that have a value; the median of the first and of the last
    ``window_fraction`` of them (at least MIN_WINDOW each); the series grows
    when the last median exceeds ``first * (1 + tolerance) + slack``."""
    values = [value for at, value in sorted(points, key=lambda p: p[0]) if at >= warmup and value is not None]
    if len(values) < 2 * MIN_WINDOW:
        return Growth(series, len(values))
    window = max(MIN_WINDOW, round(len(values) * window_fraction))
    window = min(window, len(values) // 2)
    first = statistics.median(values[:window])
    last = statistics.median(values[-window:])
    allowed = SLACK.get(measure_of(series), 0.0) if slack is None else slack
    return Growth(series, len(values), first, last, first * (1 + tolerance) + allowed)


def judge(samples: list[Sample], warmup: float, tolerance: float = TOLERANCE) -> list[Growth]:
    """The growth rule for every series in ``samples`` (each with ``elapsed_s``)."""
    return [
        growth(name, ((s["elapsed_s"] or 0.0, s.get(name)) for s in samples), warmup, tolerance)
        for name in series_names(samples)
    ]


def print_verdict(verdicts: list[Growth], out=sys.stdout) -> None:
    """The table: each series' baseline (first window's median), figure (last
    window's median), their ratio, the limit and the verdict."""

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    print(
        f"\n{'series':<44} {'first (baseline)':>16} {'last':>10} {'ratio':>6} {'limit':>10}  verdict",
        file=out,
    )
    for g in verdicts:
        ratio = "-" if g.ratio is None else f"{g.ratio:.2f}"
        print(
            f"{g.series:<44} {number(g.first):>16} {number(g.last):>10} {ratio:>6} {number(g.limit):>10}  {g.verdict}",
            file=out,
        )


# -- the samples as CSV ------------------------------------------------------------


def series_names(samples: list[Sample]) -> list[str]:
    """Every series any sample has, sorted (a role that appeared late too)."""
    names: set[str] = set()
    for sample in samples:
        names.update(key for key in sample if key not in ("elapsed_s", "utc"))
    return sorted(names)


def write_samples(path: Path, samples: list[Sample], started: float) -> None:
    """One row per sample: elapsed seconds, the UTC time, then each series
    (empty where a sample has no value for it)."""
    names = series_names(samples)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["elapsed_s", "utc", *names])
        for sample in samples:
            elapsed = sample["elapsed_s"] or 0.0
            utc = dt.datetime.fromtimestamp(started + elapsed, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            writer.writerow(
                [f"{elapsed:.1f}", utc, *("" if sample.get(n) is None else f"{sample[n]:g}" for n in names)]
            )


def read_samples(path: Path) -> list[Sample]:
    with path.open(newline="") as source:
        return [
            {key: (float(value) if value != "" else None) for key, value in row.items() if key != "utc"}
            for row in csv.DictReader(source)
        ]


@dataclasses.dataclass
class FaultRecord:
    """A fault: when it began and ended (seconds since sampling began), its
    kind, what was done, and the error if it failed or the shop did not recover."""

    began: float
    ended: float
    kind: str
    what: str
    error: str = ""


def write_faults(path: Path, faults: list[FaultRecord]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["began_s", "ended_s", "kind", "what", "error"])
        for f in faults:
            writer.writerow([f"{f.began:.1f}", f"{f.ended:.1f}", f.kind, f.what, f.error])


def read_faults(path: Path) -> list[FaultRecord]:
    if not path.exists():
        return []
    with path.open(newline="") as source:
        return [
            FaultRecord(float(r["began_s"]), float(r["ended_s"]), r["kind"], r["what"], r["error"])
            for r in csv.DictReader(source)
        ]


def chart_name(series: str) -> str:
    """``rss_mb[orders-consumer-2]`` -> ``rss_mb-orders-consumer-2.png``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", series).strip("-") + ".png"


def draw_charts(directory: Path, samples: list[Sample], faults: list[FaultRecord], warmup: float) -> list[Path]:
    """One PNG per series: its samples over minutes, the warm-up shaded, each
    fault's span marked in its kind's colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name in series_names(samples):
        points = [(s["elapsed_s"] / 60, s.get(name)) for s in samples if s["elapsed_s"] is not None]
        figure, axes = plt.subplots(figsize=(7, 2.6), dpi=90)
        axes.plot([m for m, v in points if v is not None], [v for _, v in points if v is not None], lw=1, color="k")
        axes.axvspan(0, warmup / 60, color="0.9", label="warm-up")
        seen = set()
        for f in faults:
            colour = FAULT_COLOURS.get(f.kind, "tab:blue")
            label = None if f.kind in seen else f.kind
            seen.add(f.kind)
            axes.axvspan(f.began / 60, max(f.ended, f.began + 3) / 60, color=colour, alpha=0.35, label=label)
        measure = measure_of(name)
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("minutes", fontsize=8)
        axes.set_ylabel(UNITS.get(measure, measure), fontsize=8)
        axes.tick_params(labelsize=7)
        axes.set_ylim(bottom=0)
        axes.legend(fontsize=6, loc="upper left", ncols=5, frameon=False)
        figure.tight_layout()
        path = directory / chart_name(name)
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


# -- server errors during faults ----------------------------------------------------


def stats_history(prefix: Path) -> Path:
    """Where Locust's ``--csv PREFIX`` run writes its history rows."""
    return prefix.with_name(prefix.name + "_stats_history.csv")


def failure_moments(history: Path) -> list[float]:
    """When (Unix seconds) Locust counted new failures: the seconds at which
    its Aggregated history rows' Total Failure Count rose."""
    moments, previous = [], 0
    if not history.exists():
        return moments
    with history.open(newline="") as source:
        for row in csv.DictReader(source):
            if row.get("Name") != "Aggregated":
                continue
            count = int(row["Total Failure Count"])
            if count > previous:
                moments.append(float(row["Timestamp"]))
            previous = count
    return moments


def admitted_server_errors(
    statuses: dict[str, int], moments: list[float], spans: list[tuple[float, float]], failures: int, counted: int
) -> int:
    """How many server errors a round may be forgiven: all of them when every
    one is a 503 and every failure the history saw (``counted`` of the
    round's ``failures``: one it did not see has no time, so is not forgiven)
    fell within a fault's (start, end) span plus FAULT_GRACE; else none."""
    server = {code: n for code, n in statuses.items() if code.isdigit() and 500 <= int(code) <= 599}
    if not server or set(server) != {ADMITTED_STATUS} or counted < failures:
        return 0
    for moment in moments:
        if not any(began - 1 <= moment <= ended + FAULT_GRACE for began, ended in spans):
            return 0
    return server[ADMITTED_STATUS]


def history_failures(history: Path) -> int:
    """The last Total Failure Count of the Aggregated history rows (0 without any)."""
    last = 0
    if history.exists():
        with history.open(newline="") as source:
            for row in csv.DictReader(source):
                if row.get("Name") == "Aggregated":
                    last = int(row["Total Failure Count"])
    return last


# -- sampling ----------------------------------------------------------------------


def process_usage(pid: int, files_under: Path | None = None) -> tuple[float, int, int, int] | None:
    """(RSS in MB, open descriptors, threads, how many of those descriptors
    are files under ``files_under``) of a live process; None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    under = 0
    if files_under is not None:
        prefix = f"{files_under.resolve()}/"
        for fd in descriptors:
            with contextlib.suppress(OSError):  # closed since the listing
                under += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix)
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kb = int(fields.get("VmRSS", "0 kB").split()[0])
    return rss_kb / 1024, len(descriptors), int(fields["Threads"]), under


def pss_mb(pid: int) -> tuple[float, float] | None:
    """A process's proportional set size (shared pages divided among their
    users) in MB: (anonymous and file-backed, shared memory)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kb = {name: int(value) for name, value in re.findall(r"^(Pss\w*):\s+(\d+) kB", text, re.MULTILINE)}
    if "Pss" not in kb:
        return None
    shmem = kb.get("Pss_Shmem", 0)
    return (kb["Pss"] - shmem) / 1024, shmem / 1024


def process_series(role: str, pids: list[int], proportional: bool = False, files_under: Path | None = None) -> Sample:
    """``rss_mb``, ``fds`` and ``threads`` of a role's processes, summed.
    ``proportional``, for processes that share memory (PostgreSQL's): PSS
    instead of RSS, its shared memory apart as ``shared_mb``. ``files_under``
    (PostgreSQL's data directory): the descriptors open on files under it
    apart, as ``file_fds``, and not in ``fds``."""
    rss = shared = fds = files = threads = 0.0
    alive = 0
    for pid in pids:
        usage = process_usage(pid, files_under)
        if usage is None:
            continue
        alive += 1
        if proportional:
            own, shmem = pss_mb(pid) or (0.0, 0.0)
            rss += own
            shared += shmem
        else:
            rss += usage[0]
        fds += usage[1] - usage[3]
        files += usage[3]
        threads += usage[2]
    if not alive:
        return {}
    found: Sample = {f"rss_mb[{role}]": round(rss, 1), f"fds[{role}]": fds, f"threads[{role}]": threads}
    if proportional:
        found[f"shared_mb[{role}]"] = round(shared, 1)
    if files_under is not None:
        found[f"file_fds[{role}]"] = files
    return found


def metric_sum(text: str, name: str, labels: dict[str, str]) -> float:
    """The sum of a Prometheus text exposition's ``name`` samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


class Sampler:
    """Every series of one moment of the shop (module docstring)."""

    def __init__(self, shop, history: Callable[[], Path | None]):
        from goshop_devtools.settings import settings_of

        self.shop = shop
        self.history = history
        self.groups = {
            "orders-consumer": settings_of(environ=shop.child_env, service="orders-consumer").orders_consumer_group,
            "payments-consumer": settings_of(
                environ=shop.child_env, service="payments-consumer"
            ).payments_consumer_group,
        }
        self._db = None
        self._admin = None
        self._said: set[str] = set()
        self._cpu: tuple[float, float, dict[int, float]] | None = None

    # processes

    def roles(self) -> dict[str, list[int]]:
        """role -> pids: the runner, make run's children (by their pid files),
        the replicas, the broker; PostgreSQL apart (``postgres_pids``)."""
        shop = self.shop
        found: dict[str, list[int]] = {"runner": [shop.dev.process.pid]}
        for pid_file in sorted((shop.data_dir / "run").glob("*.pid")):
            with contextlib.suppress(OSError, ValueError, IndexError):
                found[pid_file.stem] = [int(pid_file.read_text().split()[0])]
        for name, replica in shop.replicas.items():
            if replica.alive():
                found[f"{name}-2"] = [replica.pid]
        with contextlib.suppress(OSError, ValueError, IndexError, AssertionError):
            found["broker"] = [shop.broker_pid()]
        return {role: [p for p in pids if pid_alive(p)] for role, pids in found.items()}

    def postgres_pids(self) -> list[int]:
        try:
            postmaster = int((self.shop.pg_data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [postmaster, *descendants(postmaster)] if pid_alive(postmaster) else []

    # PostgreSQL

    def database(self):
        import psycopg2

        from goshop_devtools.postgres import EmbeddedPostgres

        if self._db is None or self._db.closed:
            # make run's administrator: to a role without pg_read_all_stats,
            # pg_stat_activity shows other roles' sessions without their backend_type.
            url = EmbeddedPostgres(self.shop.pg_data, self.shop.pg_port).url
            self._db = psycopg2.connect(url, connect_timeout=3, options="-c statement_timeout=5000")
            self._db.autocommit = True
        return self._db

    def database_series(self) -> Sample:
        import psycopg2

        found: Sample = {}
        try:
            with self.database().cursor() as cursor:
                cursor.execute(
                    "SELECT usename, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                    " AND usename IS NOT NULL AND pid <> pg_backend_pid() GROUP BY 1"
                )
                for role, count in cursor.fetchall():
                    found[f"pg_connections[{role}]"] = float(count)
                for schema in OUTBOXES:
                    cursor.execute(f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL")
                    found[f"outbox_backlog[{schema}]"] = float(cursor.fetchone()[0])
        except psycopg2.Error:
            # Reconnected next time (a restart, a partition); said by sample().
            if self._db is not None:
                with contextlib.suppress(Exception):
                    self._db.close()
            self._db = None
            raise
        return found

    # the broker

    def lag_series(self) -> Sample:
        """Each group's lag as the broker has it: end offsets (ListOffsets)
        minus committed offsets (OffsetFetch), as ``kafka.admin groups
        list-offsets`` computes it."""
        from kafka import KafkaAdminClient
        from kafka.admin import OffsetSpec
        from kafka.errors import KafkaError

        found: Sample = {}
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self.shop.bootstrap, request_timeout_ms=5000, bootstrap_timeout_ms=5000
                )
            for group in self.groups.values():
                committed = self._admin.list_group_offsets(group).get(group) or {}
                committed = {tp: meta for tp, meta in committed.items() if meta.offset >= 0}
                if not committed:
                    continue
                ends = self._admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in committed})
                found[f"consumer_lag[{group}]"] = float(
                    sum(max(0, ends[tp].offset - meta.offset) for tp, meta in committed.items())
                )
        except (KafkaError, OSError, ValueError, KeyError):
            # A new client next time (a frozen or partitioned broker); said by sample().
            self.close_broker()
            raise
        return found

    def close_broker(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
        self._admin = None

    def metrics_lag_series(self) -> Sample:
        """Each group's lag as its live members report it (goshop_consumer_lag)."""
        from tests.chaos.harness import PORT_OFFSETS

        found: Sample = {}
        for name, group in self.groups.items():
            ports = [self.shop.base + PORT_OFFSETS[name]]
            if name in self.shop.replicas:
                ports.append(self.shop.replicas[name].port)
            total, answered = 0.0, 0
            for port in ports:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
                        text = response.read().decode()
                except OSError:
                    continue
                answered += 1
                total += metric_sum(text, "goshop_consumer_lag", {})
            if answered:
                found[f"consumer_lag_metrics[{group}]"] = total
        return found

    # the load

    def p99_series(self) -> Sample:
        """Locust's p99 over its last 10 s, from the running round's history;
        nothing between rounds."""
        prefix = self.history()
        path = None if prefix is None else stats_history(prefix)
        if path is None or not path.exists():
            return {}
        last = None
        with path.open(newline="") as source:
            for row in csv.DictReader(source):
                if row.get("Name") == "Aggregated":
                    last = row
        if last is None or time.time() - float(last["Timestamp"]) > 2 * INTERVAL:
            return {}
        value = last.get("99%", "N/A")
        return {"p99_ms": float(value)} if value not in ("N/A", "", "0") else {}

    def processes_series(self) -> Sample:
        found: Sample = {}
        roles = self.roles()
        for role, pids in roles.items():
            found.update(process_series(role, pids))
        postgres = self.postgres_pids()
        found.update(process_series("postgres", postgres, proportional=True, files_under=self.shop.pg_data))
        found.update(self.cpu_series([pid for pids in roles.values() for pid in pids] + postgres))
        found.update(self.broker_connections({**roles, "soak": [os.getpid()]}))
        return found

    def broker_connections(self, roles: dict[str, list[int]]) -> Sample:
        """``broker_connections[role]``: each client's TCP connections to the
        broker's port, established or not closed yet, as the client holds them."""
        sockets = tcp_sockets()
        found: Sample = {}
        for role, pids in roles.items():
            if role == "broker":
                continue
            count = sum(
                1
                for pid in pids
                for inode in socket_inodes(pid)
                if (ports := sockets.get(inode)) is not None and ports[1] == self.shop.kafka_port
            )
            if count:
                found[f"broker_connections[{role}]"] = float(count)
        return found

    def cpu_series(self, shop_pids: list[int]) -> Sample:
        """Cores busy since the last sample: the whole machine's (/proc/stat)
        and the shop's (its processes' utime+stime, a process seen in both
        samples; one that came or went in between is left out)."""
        now, machine = time.monotonic(), h.machine_busy_seconds()
        own = {pid: stat[1] for pid in shop_pids if (stat := proc_stat(pid)) is not None}
        previous, self._cpu = self._cpu, (now, machine, own)
        if previous is None or now <= previous[0]:
            return {}
        seconds = now - previous[0]
        shop = sum(value - previous[2][pid] for pid, value in own.items() if pid in previous[2])
        return {
            "cpu_cores[machine]": round((machine - previous[1]) / seconds, 2),
            "cpu_cores[shop]": round(max(0.0, shop) / seconds, 2),
        }

    def sample(self) -> Sample:
        """One of each series; a source that fails leaves its series empty
        this time (said once per kind of failure) and the others are taken."""
        found: Sample = {}
        sources = (self.processes_series, self.database_series, self.lag_series, self.metrics_lag_series)
        for source in (*sources, self.p99_series):
            try:
                found.update(source())
            except Exception as exc:  # a gap in one series, not the end of the soak
                said = f"{source.__name__}: {exc.__class__.__name__}"
                if said not in self._said:
                    self._said.add(said)
                    log(f"sampling {said}: {exc}")
        return found

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
        self.close_broker()


# -- the soak ----------------------------------------------------------------------


@dataclasses.dataclass
class RoundResult:
    index: int
    began: float
    ended: float
    seconds: int
    requests: int = 0
    p99_ms: float | None = None
    # 503s answered during faults, forgiven (admitted_server_errors).
    admitted: int = 0
    # The round's orders the payment timeout cancelled, and the longest any
    # took from placed to final (a fault's hold-up shows here).
    timed_out: int | None = None
    slowest_s: float | None = None
    violations: list[str] = dataclasses.field(default_factory=list)
    error: str = ""


class Soak:
    """The shop, its sampler and fault threads, and the load rounds."""

    def __init__(self, options: argparse.Namespace, workdir: Path):
        self.options = options
        self.workdir = workdir
        self.samples: list[Sample] = []
        self.faults: list[FaultRecord] = []
        self.rounds: list[RoundResult] = []
        self.started = 0.0
        self.shop = None
        self._history: Path | None = None
        self._window_opens = self._window_closes = 0.0
        self._stop = threading.Event()
        self._random = random.Random(options.seed)

    def elapsed(self) -> float:
        return time.time() - self.started

    # threads

    def _sampling(self, sampler: Sampler) -> None:
        tick = time.monotonic()
        while not self._stop.is_set():
            at = self.elapsed()
            try:
                sample = sampler.sample()
            except Exception as exc:  # a sample lost is a gap in the charts, not the end of the soak
                log(f"sample failed: {exc.__class__.__name__}: {exc}")
                sample = {}
            self.samples.append({"elapsed_s": round(at, 1), **sample})
            tick += self.options.interval
            self._stop.wait(max(0.0, tick - time.monotonic()))

    def _faulting(self, kinds: list[str]) -> None:
        from tests.chaos.harness import Faults

        faults = Faults(self.shop)
        every = self.options.fault_every
        while not self._stop.wait(self._random.uniform(0.5 * every, 1.5 * every)):
            # Only inside a round, FAULT_LEAD after its start, with FAULT_MARGIN left.
            while not self._window_opens <= time.monotonic() <= self._window_closes - FAULT_MARGIN:
                if self._stop.wait(1.0):
                    return
            kind = self._random.choice(kinds)
            record = FaultRecord(self.elapsed(), 0.0, kind, "")
            self.faults.append(record)
            try:
                record.what = self._inject(faults, kind)
                self.shop.ensure_replicas()
            except Exception as exc:
                record.error = f"{exc.__class__.__name__}: {exc}"[:500]
                log(f"fault {kind} failed or the shop did not recover: {record.error}")
            record.ended = self.elapsed()
            log(f"fault {kind} over after {record.ended - record.began:.0f} s (every worker ready)")

    def _inject(self, faults, kind: str) -> str:
        if kind == "kill":
            faults.kill_group_members()
            return "SIGKILL: payments-consumer and outboxer (make run's), orders-consumer replica"
        if kind == "freeze-broker":
            faults.freeze_broker()
            return "broker SIGSTOPped for two session timeouts"
        if kind == "restart-postgres":
            faults.restart_postgres()
            return "pg_ctl restart -m fast"
        target = self._random.choice(["broker", "postgres"])
        port, what = (self.shop.kafka_port, "the broker") if target == "broker" else (self.shop.pg_port, "PostgreSQL")
        faults.partition(port, what, seconds=20.0)
        return f"20 s partition of {what} (port {port})"

    # the run

    def fault_kinds(self) -> list[str]:
        from tests.chaos.harness import partition_unavailable, remove_leftover_partitions

        kinds = [k for k in self.options.faults if k != "partition"]
        if "partition" in self.options.faults:
            reason = partition_unavailable()
            if reason is None:
                remove_leftover_partitions()
                kinds.append("partition")
            else:
                log(f"partitions skipped: {reason}")
        return kinds

    def run(self) -> int:
        from tests.chaos.harness import Shop

        options = self.options
        log(f"starting the shop (make run's, with a replica of each worker) in {self.workdir}")
        self.shop = Shop(self.workdir)
        self.shop.start()
        # make run's broker profile, for the soak's own broker clients.
        os.environ["GOSHOP_KAFKA_BROKER_PROFILE"] = self.shop.child_env.get("GOSHOP_KAFKA_BROKER_PROFILE", "kafka")
        host = f"http://127.0.0.1:{self.shop.base}"
        log(f"shop up: gateway {host}, PostgreSQL :{self.shop.pg_port}, broker :{self.shop.kafka_port}")
        kinds = self.fault_kinds()
        sampler = Sampler(self.shop, lambda: self._history)
        self.started = time.time()
        threads = [threading.Thread(target=self._sampling, args=(sampler,), name="sampler", daemon=True)]
        if kinds:
            threads.append(threading.Thread(target=self._faulting, args=(kinds,), name="faults", daemon=True))
        for thread in threads:
            thread.start()
        log(
            f"{options.time} s of load in rounds of up to {options.round} s ({options.users} customers each), "
            f"faults ({', '.join(kinds) or 'none'}) every ~{options.fault_every:.0f} s, a sample every "
            f"{options.interval:.0f} s"
        )
        try:
            for index, seconds in enumerate(round_lengths(options.time, options.round), start=1):
                self._round(index, seconds, host)
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(120)
            sampler.close()
        return 0

    def _round(self, index: int, seconds: int, host: str) -> None:
        scratch = self.workdir / f"round-{index}"
        scratch.mkdir()
        result = RoundResult(index, self.elapsed(), 0.0, seconds)
        self.rounds.append(result)
        self._history = scratch / "locust"
        self._window_opens = time.monotonic() + FAULT_LEAD
        self._window_closes = time.monotonic() + seconds
        log(f"round {index}: {seconds} s")
        try:
            report = run_locust(host, self.options.users, self.options.spawn_rate, seconds, scratch, self._history)
        except Refused as exc:
            result.error = str(exc)
            result.ended = self.elapsed()
            log(f"round {index}: the load could not run: {exc}")
            return
        finally:
            self._window_closes = 0.0
            self._history = None
        print_stats(report, seconds)
        result.requests = report["total"]["requests"]
        result.p99_ms = report["total"]["p99_ms"]
        violations = check_invariants(host, report, self.options.settle)
        history = stats_history(scratch / "locust")
        spans = [(self.started + f.began, self.started + (f.ended or self.elapsed())) for f in self.faults]
        result.admitted = admitted_server_errors(
            report["statuses"],
            failure_moments(history),
            spans,
            report["total"]["failures"],
            history_failures(history),
        )
        if result.admitted:
            violations = [v for v in violations if not v.startswith(f"{NO_5XX}:")]
            log(f"round {index}: {result.admitted} x {ADMITTED_STATUS}, each during a fault (admitted)")
        result.violations = violations
        self._saga_figures(result)
        result.ended = self.elapsed()
        if result.violations:
            print_violations(result.violations, out=sys.stdout)
        else:
            log(f"round {index}: every make load invariant held")

    def _saga_figures(self, result: RoundResult) -> None:
        import sqlalchemy as sa

        from goshop_orders.read_contract import PAYMENT_TIMEOUT_REASON

        query = sa.text(
            "SELECT count(*) FILTER (WHERE reason = :timeout), max(extract(epoch FROM updated_at - created_at))"
            " FROM orders.orders WHERE created_at >= to_timestamp(:since) AND status <> 'new'"
        )
        try:
            with self.shop.engine.connect() as connection:
                row = connection.execute(
                    query, {"timeout": PAYMENT_TIMEOUT_REASON, "since": self.started + result.began}
                ).one()
        except sa.exc.SQLAlchemyError as exc:
            log(f"round {result.index}: the orders could not be read: {exc.__class__.__name__}")
            return
        result.timed_out, result.slowest_s = row[0], None if row[1] is None else round(float(row[1]), 1)
        log(
            f"round {result.index}: {result.timed_out} orders cancelled by the payment timeout; the slowest "
            f"took {result.slowest_s} s from placed to final"
        )

    def stop(self) -> None:
        if self.shop is not None:
            self.shop.stop()


def write_rounds(path: Path, rounds: list[RoundResult]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            [
                "round",
                "began_s",
                "ended_s",
                "load_s",
                "requests",
                "p99_ms",
                "admitted_503",
                "timed_out",
                "slowest_s",
                "violations",
                "error",
            ]
        )
        for r in rounds:
            writer.writerow(
                [
                    r.index,
                    f"{r.began:.1f}",
                    f"{r.ended:.1f}",
                    r.seconds,
                    r.requests,
                    r.p99_ms or "",
                    r.admitted,
                    "" if r.timed_out is None else r.timed_out,
                    "" if r.slowest_s is None else r.slowest_s,
                    " | ".join(r.violations),
                    r.error,
                ]
            )


def verdict(
    out_dir: Path,
    samples: list[Sample],
    faults: list[FaultRecord],
    rounds: list[RoundResult] | None,
    warmup: float,
    tolerance: float,
) -> int:
    """Charts, the growth table and the failures; 0 when nothing failed."""
    charts = draw_charts(out_dir, samples, faults, warmup)
    verdicts = judge(samples, warmup, tolerance)
    print_verdict(verdicts)
    failures = [
        f"{g.series} grows: {g.first:,.1f} -> {g.last:,.1f} (limit {g.limit:,.1f})" for g in verdicts if g.fails
    ]
    for g in verdicts:
        if g.grows and g.series in KNOWN_GROWTH and measure_of(g.series) not in CONTEXT:
            print(f"\n{g.series} grows ({g.first:,.1f} -> {g.last:,.1f}), known: {KNOWN_GROWTH[g.series]}")
    failures += [f"fault {f.kind} at {f.began:.0f} s: {f.error}" for f in faults if f.error]
    for r in rounds or []:
        failures += [f"round {r.index}: {v}" for v in r.violations]
        if r.error:
            failures.append(f"round {r.index}: the load could not run: {r.error.splitlines()[0]}")
    admitted = [f"round {r.index}: {r.admitted}" for r in rounds or [] if r.admitted]
    if admitted:
        print(f"\n{ADMITTED_STATUS}s answered during a fault, admitted: {'; '.join(admitted)}")
    span = max((s["elapsed_s"] or 0.0 for s in samples), default=0.0)
    print(
        f"\n{len(samples)} samples over {span / 60:.1f} min (warm-up {warmup / 60:.1f} min), {len(faults)} faults, "
        f"{len(rounds) if rounds is not None else 'unknown'} load rounds; {len(charts)} charts, samples.csv, "
        f"faults.csv in {out_dir}"
    )
    if failures:
        print(f"\nFAILED: {len(failures)}", flush=True)
        for line in failures[:60]:
            print(f"  - {line}")
        return 1
    print("\nsoak held: every round's invariants, every fault recovered from, no series grows", flush=True)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/bench_soak.py", description=__doc__.splitlines()[0])
    parser.add_argument("--time", type=duration_seconds, default=3600, help="how long the load runs (60m)")
    parser.add_argument("--out", type=Path, help="where the CSVs and charts go (results/soak/<UTC time>/)")
    parser.add_argument(
        "--warmup",
        default=WARMUP,
        help="left out of the growth rule: auto (10%% of the run, at least 6 min, at most half), a share or a duration",
    )
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help=f"growth allowed ({TOLERANCE:g})")
    parser.add_argument("--interval", type=float, default=INTERVAL, help=f"seconds between samples ({INTERVAL:g})")
    parser.add_argument("--round", type=int, default=ROUND_SECONDS, help=f"seconds per load round ({ROUND_SECONDS})")
    parser.add_argument("--users", type=int, default=USERS, help=f"customers per round ({USERS})")
    parser.add_argument(
        "--spawn-rate", type=float, default=SPAWN_RATE, help=f"customers started per second ({SPAWN_RATE:g})"
    )
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS, help="each round's settle deadline, s")
    parser.add_argument(
        "--fault-every", type=float, default=FAULT_EVERY, help=f"mean seconds between faults ({FAULT_EVERY:g})"
    )
    parser.add_argument(
        "--faults",
        type=lambda text: [k for k in text.split(",") if k],
        default=list(FAULT_KINDS),
        help=f"which faults, comma-separated ({','.join(FAULT_KINDS)}; empty for none)",
    )
    parser.add_argument("--seed", type=int, help="the faults' random choices, to repeat a run's")
    parser.add_argument("--keep", action="store_true", help="keep the shop's data and logs")
    parser.add_argument("--charts-from", type=Path, help="no run: the verdict and charts again from a run's CSVs")
    options = parser.parse_args(argv)
    unknown = set(options.faults) - set(FAULT_KINDS)
    if unknown:
        parser.error(f"--faults: no such fault {sorted(unknown)} (known: {', '.join(FAULT_KINDS)})")
    if not 5 <= options.round <= MAX_SECONDS:
        parser.error(f"--round: make load runs from 5 to {MAX_SECONDS} s")
    return options


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.charts_from is not None:
        samples = read_samples(options.charts_from / "samples.csv")
        span = max((s["elapsed_s"] or 0.0 for s in samples), default=0.0)
        warmup = warmup_seconds(options.warmup, span)
        return verdict(
            options.charts_from,
            samples,
            read_faults(options.charts_from / "faults.csv"),
            None,
            warmup,
            options.tolerance,
        )
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    out_dir = options.out or ROOT / "results" / "soak" / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out_dir.mkdir(parents=True, exist_ok=True)
    # Not under pytest's or a shared tmp dir that becomes private: PostgreSQL
    # runs as the wheel's system user under root and must reach its data.
    workdir = Path(tempfile.mkdtemp(prefix="goshop-soak-"))
    soak = Soak(options, workdir)
    code = 2
    try:
        code = soak.run()
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'SIGINT'}): stopping the shop; the samples so far are written")
        code = 130
    except (AssertionError, OSError, RuntimeError) as exc:
        log(f"the soak could not run: {exc.__class__.__name__}: {exc}")
        code = 2
    finally:
        soak.stop()
    if soak.samples:
        write_samples(out_dir / "samples.csv", soak.samples, soak.started)
        write_faults(out_dir / "faults.csv", soak.faults)
        write_rounds(out_dir / "rounds.csv", soak.rounds)
        warmup = warmup_seconds(options.warmup, max(s["elapsed_s"] or 0.0 for s in soak.samples))
        judged = verdict(out_dir, soak.samples, soak.faults, soak.rounds, warmup, options.tolerance)
        code = code or judged
    if options.keep or code != 0:
        log(f"the shop's logs and data are kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
