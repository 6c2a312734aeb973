"""``make load``: a realistic mix of customers through the gateway, then the invariants.

Runs Locust headless (``goshop_devtools/load/locustfile.py``) in a process of
its own against a shop that is already up (``make run``), bounded in users and
time, on loopback only. Prints Locust's figures per request type (requests,
throughput, p50 and p99, failures) and the error rate, then checks through
the gateway, as each customer, that every order became final, has one
payment, and that no answer was a 5xx (goshop_devtools.load.invariants).

Exit status: 0 when every invariant held, 1 when one did not (each is said),
2 when the run was refused (a host not on loopback, a bound exceeded) or
could not start (no shop answering, Locust failing), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

from goshop_devtools.load.invariants import Gateway, check_orders, status_violations

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
DEFAULT_HOST = "http://127.0.0.1:8080"
# Each customer's login holds one of its client address's 50 login attempts
# while it is in flight (goshop_users.throttle); every customer here comes from
# the same address. More would also only measure this 2-core machine's queue.
MAX_USERS = 50
MAX_SPAWN_RATE = 10.0
MIN_SECONDS, MAX_SECONDS = 5, 600
MAX_SETTLE_SECONDS = 300
# At the end, Locust lets each customer finish its step for this long, then
# stops it (a checkout cut off so is counted as unanswered: see the locustfile).
STOP_TIMEOUT_SECONDS = 2


class Refused(Exception):
    """The run is not started; the message says why and what to do."""


def loopback_host(url: str) -> str:
    """``url`` unchanged when it is http(s) on a loopback address; else Refused.
    A name other than ``localhost`` is refused without being looked up: a
    load never leaves the machine."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Refused(f"{url!r} is not an http:// or https:// URL")
    if parsed.path not in ("", "/") or parsed.query:
        raise Refused(f"{url!r}: give the gateway's origin only (e.g. {DEFAULT_HOST})")
    host = parsed.hostname
    # localhost from the hosts file, which never asks the network.
    addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)} if host == "localhost" else {host}
    for address in addresses:
        try:
            loopback = ipaddress.ip_address(address.split("%")[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise Refused(
                f"refusing to load {host}: make load sends traffic only to this machine's loopback "
                "(127.0.0.0/8, ::1, localhost). Point LOAD_HOST at a shop on loopback, e.g. make run's "
                f"{DEFAULT_HOST}."
            )
    return url.rstrip("/")


def duration_seconds(text: str) -> int:
    """``60``, ``60s``, ``2m``, ``1m30s`` as seconds, within the bounds; else Refused."""
    found = re.fullmatch(r"\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*", text)
    if not found or not any(found.groups()):
        raise Refused(f"LOAD_TIME={text!r}: give seconds or minutes, e.g. 60s or 2m")
    seconds = int(found.group(1) or 0) * 60 + int(found.group(2) or 0)
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise Refused(f"LOAD_TIME={text!r}: a load runs from {MIN_SECONDS} s to {MAX_SECONDS // 60} min")
    return seconds


def bounded(name: str, value: float, low: float, high: float, why: str = "") -> float:
    if not low <= value <= high:
        raise Refused(f"{name}={value:g}: allowed from {low:g} to {high:g}{why}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m goshop_devtools.load", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"the gateway's origin, on loopback ({DEFAULT_HOST})")
    parser.add_argument("--users", type=int, default=20, help=f"simulated customers, at most {MAX_USERS} (20)")
    parser.add_argument("--spawn-rate", type=float, default=5.0, help="customers started per second (5)")
    parser.add_argument("--time", default="60s", help=f"how long the load runs, {MIN_SECONDS}s to 10m (60s)")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=30.0,
        help="after the load, how long every order has to become final (30)",
    )
    return parser.parse_args(argv)


def _ready(host: str) -> int | None:
    parsed = urllib.parse.urlsplit(host)
    if parsed.hostname is None:  # refused before, as no http(s) URL
        return None
    connection_class = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parsed.hostname, parsed.port, timeout=5)
    try:
        connection.request("GET", "/ready")
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


def run_locust(
    host: str, users: int, spawn_rate: float, seconds: int, scratch: Path, history: Path | None = None
) -> dict:
    """Locust headless in a process of its own (gevent patches whatever
    imports it); its report, or Refused with the end of its log.

    ``history``: where Locust writes its CSV statistics as it runs (``--csv``
    prefix, with ``--csv-full-history``: each second a row whose percentiles
    cover the last 10 s), for a caller that follows the run (bench/bench_soak.py)."""
    report_path, log_path = scratch / "report.json", scratch / "locust.log"
    env = {**os.environ, "GOSHOP_LOAD_REPORT": str(report_path), "GOSHOP_LOAD_RUN_ID": uuid.uuid4().hex[:8]}
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--host",
        host,
        "--users",
        str(users),
        "--spawn-rate",
        f"{spawn_rate:g}",
        "--run-time",
        f"{seconds}s",
        "--stop-timeout",
        str(STOP_TIMEOUT_SECONDS),
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    if history is not None:
        argv += ["--csv", str(history), "--csv-full-history"]
    with log_path.open("wb") as log:
        locust = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        code = locust.wait(seconds + STOP_TIMEOUT_SECONDS + 60)
    except BaseException:
        # Ctrl-C or a hang: Locust (and nothing else) is stopped.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(locust.pid, signal.SIGTERM)
        try:
            locust.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(locust.pid, signal.SIGKILL)
            locust.wait()
        raise
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
    if code != 0 or not report_path.exists():
        raise Refused(f"Locust failed (exit {code}):\n{tail}")
    return json.loads(report_path.read_text())


def _ms(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def print_stats(report: dict, seconds: int, out=sys.stdout) -> None:
    """Locust's figures, one line per request type, then the total and the error rate."""
    print(f"\n{'request':<34} {'reqs':>7} {'fails':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}", file=out)
    for entry in [*report["entries"], {**report["total"], "name": "all"}]:
        print(
            f"{entry['name']:<34} {entry['requests']:>7} {entry['failures']:>6} {entry['rps']:>7.1f} "
            f"{_ms(entry['p50_ms']):>7} {_ms(entry['p99_ms']):>7}",
            file=out,
        )
    total = report["total"]
    rate = total["failures"] / total["requests"] if total["requests"] else 0.0
    statuses = ", ".join(f"{code}: {n}" for code, n in report["statuses"].items())
    print(
        f"\nthroughput {total['rps']:.1f} req/s over {seconds} s; error rate {rate:.2%} "
        f"({total['failures']} of {total['requests']}); statuses {statuses}",
        file=out,
    )
    throttled = report["statuses"].get("429", 0)
    if throttled:
        print(
            f"{throttled} x 429: the login throttle refused logins from this address (a client's earlier wrong "
            "passwords count for 15 min; see docs/api.md, Login)",
            file=out,
        )


def print_violations(violations: list[str], out=sys.stderr, shown: int = 50) -> None:
    """Each violation on a line of its own, the first ``shown`` of them."""
    print(f"\nFAILED: {len(violations)} invariant violation(s):", file=out)
    for violation in violations[:shown]:
        print(f"  - {violation}", file=out)
    if len(violations) > shown:
        print(f"  ... and {len(violations) - shown} more", file=out)


def check_invariants(host: str, report: dict, settle: float, out=sys.stdout) -> list[str]:
    """Every invariant of one Locust run (its ``report``), checked through the
    gateway at ``host`` within ``settle`` seconds: the violations (empty: all held)."""
    violations = status_violations(report["statuses"], report["errors"], report["idempotency_violations"])
    placed = sum(len(c["orders"]) for c in report["customers"])
    print(
        f"\nchecking {placed} orders of {len(report['customers'])} customers through the gateway "
        f"(settle deadline {settle:g} s)",
        file=out,
        flush=True,
    )
    began = time.monotonic()
    gateway = Gateway(host)
    try:
        outcome = check_orders(gateway, report["customers"], settle)
    finally:
        gateway.close()
    states = ", ".join(f"{n} {status}" for status, n in sorted(outcome.orders.items())) or "no orders"
    print(f"orders: {states}; {outcome.payments} payments (checked in {time.monotonic() - began:.1f} s)", file=out)
    return violations + outcome.violations


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    # SIGTERM (and SIGHUP) as Ctrl-C: Locust, in a session of its own, is
    # stopped on the way out rather than left to run out its time.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        return _main(options)
    except KeyboardInterrupt as exc:
        print(f"make load: interrupted ({exc or 'SIGINT'}): Locust stopped, no invariant checked", file=sys.stderr)
        return 130


def _main(options: argparse.Namespace) -> int:
    try:
        host = loopback_host(options.host)
        users = int(bounded("LOAD_USERS", options.users, 1, MAX_USERS, " (one client address: docs/development.md)"))
        spawn_rate = bounded("LOAD_SPAWN_RATE", options.spawn_rate, 0.1, MAX_SPAWN_RATE)
        seconds = duration_seconds(options.time)
        settle = bounded("LOAD_SETTLE_SECONDS", options.settle_seconds, 1, MAX_SETTLE_SECONDS)
    except Refused as exc:
        print(f"make load: {exc}", file=sys.stderr)
        return 2
    if _ready(host) != 200:
        print(
            f"make load: no shop is ready at {host}/ready. Start one with `make run` (in another terminal) "
            "and try again, or set LOAD_HOST.",
            file=sys.stderr,
        )
        return 2
    print(f"load: {users} customers (+{spawn_rate:g}/s) for {seconds} s against {host}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="goshop-load-"))
    try:
        try:
            report = run_locust(host, users, spawn_rate, seconds, scratch)
        except Refused as exc:
            print(f"make load: {exc}", file=sys.stderr)
            return 2
        print_stats(report, seconds)
        violations = check_invariants(host, report, settle)
        if violations:
            print_violations(violations)
            return 1
        print(
            "invariants held: every order final, one payment each (confirmed if paid, failed if cancelled), "
            "one order per checkout, replays replayed, no 5xx, no other errors"
        )
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
