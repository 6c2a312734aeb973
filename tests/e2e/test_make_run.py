"""``make run``'s program as a newcomer meets it: the shop comes up and says so
plainly, a process that dies comes back, an edit reloads what uses it, Ctrl-C
or SIGTERM takes everything down within 3 s, and a killed runner leaves
nothing behind that the next start cannot clear.

Every runner here has its own data directory and free ports; the runner is
signalled alone (its processes are in sessions of their own), so what stops
them is the runner itself.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import pytest

from goshop_common.db import roles
from goshop_devtools.broker import EmbeddedBroker, broker_bin
from goshop_devtools.lifeline import command_line
from goshop_devtools.postgres import ephemeral_low, free_port, port_bindable
from goshop_devtools.supervisor import Spec, Supervisor
from tests.e2e.conftest import ROOT, Http

STOP_BUDGET = 3.0


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _free_base() -> int:
    """A base port whose 16 ports (base + 0..7, base + 1000..1007) are free
    and below the kernel's ephemeral range. Inside that range, a reloading
    service's port is briefly unbound, and any outgoing connection on the
    machine (its sibling's new database pool, say) can be given it as a local
    port and keep it: the service then cannot bind again."""
    high = ephemeral_low() - 1008
    while True:
        base = random.randrange(10000, high)
        if all(port_bindable(base + o) and port_bindable(base + 1000 + o) for o in range(8)):
            return base


def _alive(pid: int) -> bool:
    # A zombie (dead, not reaped yet) has an empty command line.
    return bool(command_line(pid))


def _descendants(pid: int) -> dict[int, str]:
    """Every live process under ``pid`` (Linux /proc), with its command line."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            for kid in kids:
                line = command_line(kid)
                if line:
                    found[kid] = line
                    todo.append(kid)
    return found


def _mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            line = command_line(int(entry.name))
            if line and text in line:
                pids.append(int(entry.name))
    return pids


def _wait_gone(pids, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


class Runner:
    """``python -m goshop_devtools.run`` on free ports, its output in a file."""

    def __init__(self, workdir: Path, *, log_format: str | None = None, ports: dict | None = None):
        self.data_dir = workdir / "state"
        self.ports = ports or {"pg": free_port(), "kafka": free_port(), "base": _free_base()}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GOSHOP_")}
        if log_format:
            self.env["GOSHOP_LOG_FORMAT"] = log_format
        self.workdir = workdir
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def base(self) -> int:
        return self.ports["base"]

    def start(self, name: str = "dev.log") -> Runner:
        self.log_path = self.workdir / name
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "goshop_devtools.run",
                    "--data-dir",
                    str(self.data_dir),
                    "--pg-port",
                    str(self.ports["pg"]),
                    "--kafka-port",
                    str(self.ports["kafka"]),
                    "--base-port",
                    str(self.base),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 90, after: int = 0) -> re.Match:
        """The first match of ``pattern`` in the output past offset ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log[after:])
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} within {timeout}s (exit {self.process.poll()}):\n{self.log[-4000:]}")

    def wait_until_up(self) -> Runner:
        self.wait_for(r"the shop is up", timeout=120)
        return self

    def children(self) -> dict[int, str]:
        return _descendants(self.process.pid)

    def child(self, module: str) -> int:
        [pid] = [pid for pid, line in self.children().items() if f"-m {module} " in line + " "]
        return pid

    def postgres_pid(self) -> int | None:
        try:
            return int((self.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def signal_and_time(self, signum: int, timeout: float = 30) -> tuple[int, float]:
        began = time.monotonic()
        os.kill(self.process.pid, signum)
        code = self.process.wait(timeout)
        return code, time.monotonic() - began

    def kill_runner_only(self) -> None:
        """Kill the runner's process group, not what names its data directory
        (a runner that shares its directory with another must not take the
        other's processes along)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in [*_mentioning(str(self.data_dir)), self.postgres_pid()]:
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _every_port(runner: Runner) -> list[int]:
    base = runner.base
    return [
        *(base + o for o in range(8)),
        *(base + 1000 + o for o in (0, 1, 2, 3, 5)),
        runner.ports["pg"],
        runner.ports["kafka"],
    ]


def _sign_up(gw: Http) -> dict:
    account = {"email": f"dev-{uuid.uuid4().hex[:10]}@example.com", "password": "long enough password"}
    status, _, body = gw.request("POST", "/v1/users/register", account)
    assert status == 201, body
    status, _, tokens = gw.request("POST", "/v1/users/login", account)
    assert status == 200, tokens
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _settled(gw: Http, auth: dict, order_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, _, body = gw.request("GET", f"/v1/orders/{order_id}/status", headers=auth)
        if body["status"] != "new":
            return body["status"]
        time.sleep(0.2)
    return "new"


def _checkout_ends(gw: Http, auth: dict) -> str:
    status, _, order = gw.request("POST", "/v1/checkout", {"amount_cents": 19901, "currency": "RUB"}, headers=auth)
    assert status == 201, order
    return _settled(gw, auth, order["id"])


# -- one shop, in console mode, shared by the tests that need it up ---------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    # No GOSHOP_LOG_FORMAT, and its output a file: as in an IDE's run pane or `| tee`.
    runner = Runner(tmp_path_factory.mktemp("shop")).start()
    try:
        yield runner.wait_until_up()
    finally:
        runner.kill()


@pytest.fixture(scope="module")
def gw(shop) -> Http:
    return Http(shop.base)


def test_first_start_shows_its_progress_and_ends_with_urls_and_a_try_it_block(shop):
    log = shop.log
    runner_says = [line.split("| ", 1)[1] for line in log.splitlines() if line[9:].startswith("goshop-dev ")]
    steps = [
        r"^development shop in .* \(logs: console; reload on change\)$",
        r"^first start: initialising a new database in ",
        r"^PostgreSQL ready on 127\.0\.0\.1:\d+",
        r"^broker \(Tansu, in memory\) ready on ",
        r"^database roles ready: goshop_migrate, goshop_users, ",
        r"^migrating users, orders, payments$",
        r"^migrated users: applied \d+ in [\d.]+ s, now at \d{14}$",
        r"^migrated orders: applied \d+ in [\d.]+ s, now at \d{14}$",
        r"^migrated payments: applied \d+ in [\d.]+ s, now at \d{14}$",
        r"^gateway ready in [\d.]+ s$",
        rf"^the shop is up in [\d.]+ s; talk to the gateway at http://127\.0\.0\.1:{shop.base}$",
    ]
    at = 0
    for step in steps:
        index = next((i for i, line in enumerate(runner_says) if i >= at and re.search(step, line)), None)
        assert index is not None, f"no {step!r} (in order) in:\n" + "\n".join(runner_says)
        at = index
    for name in (
        "users",
        "orders",
        "payments",
        "outboxer",
        "ops",
        "orders-consumer",
        "payments-consumer",
        "maintenance",
    ):
        assert f"{name} ready in " in log
    block = log.split("try it:\n", 1)[1].splitlines()[:3]
    assert [line.split()[0] for line in block] == ["curl", "TOKEN=$(curl", "curl"]
    # Not a terminal: the same lines, without a colour code or a JSON object.
    assert "\x1b" not in log
    assert not [line for line in log.splitlines() if line.startswith(("{", "["))]


def test_the_try_it_block_places_an_order_that_ends_paid(shop, gw):
    block = [line.strip() for line in shop.log.split("try it:\n", 1)[1].splitlines()[:3]]
    # What a reader pastes into a shell: bash, curl and python3 from the PATH.
    result = subprocess.run(
        ["bash", "-c", "\n".join(block)],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    order = json.loads(result.stdout.strip().splitlines()[-1])
    assert order["status"] == "new", result.stdout
    account = {"email": "me@example.com", "password": "long enough password"}
    _, _, tokens = gw.request("POST", "/v1/users/login", account)
    assert _settled(gw, {"Authorization": f"Bearer {tokens['access_token']}"}, order["id"]) == "paid"


def test_each_process_connects_as_its_own_role(shop):
    # Every process's pool holds a connection by now: /ready asks the database.
    # Asked as the migration role: any role sees who else is connected.
    connection = psycopg2.connect(f"postgresql://goshop_migrate:goshop@127.0.0.1:{shop.ports['pg']}/goshop")
    try:
        with connection.cursor() as cursor:
            # The processes' pools name themselves "goshop" (goshop_common.db.session).
            cursor.execute("SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = 'goshop'")
            connected = {row[0] for row in cursor.fetchall()}
    finally:
        connection.close()
    assert connected == set(roles.RUNTIME)


def test_the_console_is_one_short_prefixed_line_per_event(shop, gw):
    auth = _sign_up(gw)
    assert _checkout_ends(gw, auth) == "paid"
    time.sleep(0.5)
    lines = shop.log.splitlines()
    prefixed = re.compile(r"^\d\d:\d\d:\d\d (?P<name>[a-z-]+) +\| (?P<text>.*)$")
    widths = {line.index("|") for line in lines if prefixed.match(line)}
    assert len(widths) == 1, "the name column is not of a fixed width"
    texts = [m["name"] + " | " + m["text"] for m in map(prefixed.match, lines) if m]
    assert any(re.fullmatch(r"gateway \| POST /v1/checkout 201 \d+ ms rid=[0-9a-f]{32}", t) for t in texts)
    assert any(re.fullmatch(r"orders \| POST /v1/orders 201 \d+ ms rid=[0-9a-f]{32}", t) for t in texts)
    assert not [t for t in texts if t.split(" | ", 1)[1].startswith("{")], "a JSON line on the console"
    # Library chatter stays below WARNING; probes that succeed are not shown.
    assert "kafka.cluster: Updated metadata" not in shop.log
    assert "Starting monitor for PID" not in shop.log
    assert not [t for t in texts if re.search(r"GET /(ready|live|metrics) 200", t)]


def test_a_worker_killed_with_sigkill_is_restarted_and_a_later_checkout_ends_paid(shop, gw):
    victim = shop.child("goshop_payments.consumer")
    mark = len(shop.log)
    os.kill(victim, signal.SIGKILL)
    shop.wait_for(
        rf"payments-consumer killed by SIGKILL \(pid {victim}, up [\d.]+ s\); restarting in 1 s", 10, after=mark
    )
    shop.wait_for(r"payments-consumer is back \(ready in [\d.]+ s\)", 30, after=mark)
    successor = shop.child("goshop_payments.consumer")
    assert successor != victim
    # Started again with the broker's client options (goshop_common.messaging.broker_profiles).
    environ = Path(f"/proc/{successor}/environ").read_bytes().split(b"\0")
    assert b"GOSHOP_KAFKA_BROKER_PROFILE=tansu" in environ
    assert _checkout_ends(gw, _sign_up(gw)) == "paid"


def test_a_server_that_dies_comes_back_too(shop, gw):
    [victim] = [pid for pid, line in shop.children().items() if "goshop_orders/development.ini" in line]
    mark = len(shop.log)
    os.kill(victim, signal.SIGKILL)
    shop.wait_for(r"orders killed by SIGKILL .*restarting in \d+ s", 10, after=mark)
    shop.wait_for(r"orders is back", 30, after=mark)
    assert _checkout_ends(gw, _sign_up(gw)) == "paid"


def test_a_changed_source_file_reloads_only_the_processes_that_load_it(shop, gw):
    source = ROOT / "goshop_payments" / "provider.py"
    others = {pid for pid, line in shop.children().items() if "goshop_users" in line or "goshop_orders" in line}
    before = os.stat(source)
    mark = len(shop.log)
    # Only the modification time moves (and is put back): the file stays as it is.
    os.utime(source, ns=(before.st_atime_ns, time.time_ns() + 5_000_000_000))
    try:
        shop.wait_for(r"goshop_payments/provider\.py changed: reloading payments, payments-consumer\n", 15, after=mark)
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    shop.wait_for(r"payments is back", 30, after=mark)
    shop.wait_for(r"payments-consumer is back", 30, after=mark)
    assert others <= set(shop.children()), "a process that does not load the file was restarted"
    assert _checkout_ends(gw, _sign_up(gw)) == "paid"


def test_the_command_line_tools_find_the_shop_through_its_shop_env(shop):
    shop_file = shop.data_dir / "shop.env"
    assert f"Its addresses for a shell: set -a; . {shop_file}; set +a" in shop.log
    values = dict(line.split("=", 1) for line in shop_file.read_text().splitlines() if not line.startswith("#"))
    assert values["GOSHOP_KAFKA_BOOTSTRAP"] == f"'127.0.0.1:{shop.ports['kafka']}'"
    assert values["GOSHOP_GATEWAY_URL"] == f"'http://127.0.0.1:{shop.base}'"
    # No GOSHOP_DATABASE_URL nor GOSHOP_KAFKA_BOOTSTRAP: only where the shop's data is.
    env = {**shop.env, "GOSHOP_DEV_DIR": str(shop.data_dir)}
    outputs = {}
    for tool in (["goshop_orders.migrate", "status"], ["goshop_common.messaging.deadletters", "list"]):
        result = subprocess.run(
            [sys.executable, "-m", *tool], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        outputs[tool[0]] = result.stdout
    assert "Applied" in outputs["goshop_orders.migrate"]
    assert "Pending" not in outputs["goshop_orders.migrate"]


def test_a_second_runner_of_the_same_data_directory_refuses_and_leaves_the_first_running(shop, gw):
    before = shop.children()
    postgres = shop.postgres_pid()
    # What a second `make run` in the same checkout is: same directory, same ports.
    second = Runner(shop.workdir, ports=shop.ports, log_format="console").start("second.log")
    try:
        assert second.process.wait(30) == 3, second.log
    finally:
        second.kill_runner_only()
    pid = shop.process.pid
    assert f"another make run (pid {pid}) is running the shop in {shop.data_dir}" in second.log
    assert f"Ctrl-C in its terminal, or kill {pid}" in second.log
    assert "stopped" not in second.log, "the second runner stopped something"
    assert set(before) <= set(shop.children()), "a process of the first runner was replaced"
    assert shop.postgres_pid() == postgres
    assert gw.request("GET", "/ready")[0] == 200
    assert _checkout_ends(gw, _sign_up(gw)) == "paid"


def test_ctrl_c_stops_every_process_within_3_seconds(shop):
    # Last of the shared shop's tests: it stops it.
    pids = [*shop.children(), shop.postgres_pid()]
    assert len(pids) == 11, pids  # nine processes, the broker, PostgreSQL
    code, took = shop.signal_and_time(signal.SIGINT)
    assert code == 0, shop.log[-3000:]
    assert took < STOP_BUDGET, f"Ctrl-C took {took:.2f} s:\n{shop.log[-1500:]}"
    left = _wait_gone(pids, 0.5)
    assert left == [], {p: command_line(p) for p in left}
    assert [p for p in _every_port(shop) if _listening(p)] == []
    assert re.search(r"Ctrl-C: stopping everything.*\n(.*\n)*.*stopped in [\d.]+ s", shop.log)
    assert not (shop.data_dir / "shop.env").exists(), "the stopped shop's addresses are still given out"
    # Each process ends within the grace, none is killed (goshop_devtools.lifeline).
    assert "not stopped within" not in shop.log


# -- runners of their own -----------------------------------------------------------


def test_a_killed_runner_takes_its_processes_along_and_the_next_start_clears_its_postgres(tmp_path):
    first = Runner(tmp_path, log_format="json").start("first.log")
    second = None
    try:
        first.wait_until_up()
        children = first.children()
        postgres = first.postgres_pid()
        assert len(children) == 10, children  # nine processes and the broker
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        assert _wait_gone(children, STOP_BUDGET) == [], "children outlived the runner"
        # pg_ctl detaches PostgreSQL: it is the one thing left, for the next start to find.
        assert _alive(postgres)
        second = Runner(tmp_path, log_format="json", ports=first.ports).start("second.log").wait_until_up()
        assert f"stopped the PostgreSQL an earlier run left running (pid {postgres}, port {first.ports['pg']})" in (
            second.log
        )
        assert not _alive(postgres)
        # Asked for JSON: every line is a JSON object, the runner's own included,
        # and the libraries (kafka-python) say only their warnings.
        entries = [json.loads(line) for line in second.log.splitlines()]
        assert {"goshop.dev", "goshop.request"} <= {entry["logger"] for entry in entries}
        assert not [e for e in entries if not e["logger"].startswith("goshop") and e["level"] in ("debug", "info")]
        assert _checkout_ends(Http(second.base), _sign_up(Http(second.base))) == "paid"
        pids = [*second.children(), second.postgres_pid()]
        code, took = second.signal_and_time(signal.SIGTERM)
        assert code == 0
        assert took < STOP_BUDGET, f"SIGTERM took {took:.2f} s:\n{second.log[-1500:]}"
        assert _wait_gone(pids, 0.5) == []
        assert [p for p in _every_port(second) if _listening(p)] == []
    finally:
        first.kill()
        if second is not None:
            second.kill()


@pytest.mark.parametrize(
    "moment",
    [r"PostgreSQL ready on", r"migrated payments: ", r"outboxer ready in"],
    ids=["postgres-up", "migrated", "first-process-ready"],
)
def test_sigterm_during_start_up_stops_what_was_started(tmp_path, moment):
    runner = Runner(tmp_path, log_format="console").start()
    try:
        runner.wait_for(moment, timeout=90)
        started = [*runner.children(), runner.postgres_pid()]
        code, took = runner.signal_and_time(signal.SIGTERM)
        assert code == 0, runner.log[-3000:]
        assert took < 10, f"took {took:.2f} s:\n{runner.log[-1500:]}"
        assert _wait_gone([p for p in started if p], 1) == []
        assert _mentioning(str(runner.data_dir)) == []
        assert [p for p in _every_port(runner) if _listening(p)] == []
        assert "the shop is up" not in runner.log
    finally:
        runner.kill()


def test_a_port_held_by_another_program_is_refused_with_advice(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = Runner(tmp_path, ports={"pg": port, "kafka": free_port(), "base": _free_base()}).start()
        assert runner.process.wait(30) == 2
    assert (
        f"port {port} is taken. Set GOSHOP_DATABASE_URL to use the server there, "
        "or GOSHOP_DEV_PG_PORT to start ours elsewhere."
    ) in runner.log
    assert "stopped the PostgreSQL" not in runner.log


def _orphan(command: list[str]) -> int:
    """Start ``command`` in a process that exits at once: an orphan, as a
    killed runner leaves where there is no parent-death signal."""
    # Its output is not ours: holding our pipe open, it would keep run() waiting.
    script = (
        "import subprocess, sys; d = subprocess.DEVNULL; "
        "print(subprocess.Popen(sys.argv[1:], stdin=d, stdout=d, stderr=d, start_new_session=True).pid)"
    )
    out = subprocess.run([sys.executable, "-c", script, *command], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_a_broker_left_by_an_earlier_run_is_found_by_its_pid_file_and_stopped(tmp_path):
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    pid = _orphan([*command, "--storage-engine", "memory://tansu/"])
    try:
        (tmp_path / "tansu.pid").write_text(f"{pid}\n")
        deadline = time.monotonic() + 10
        while not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        broker = EmbeddedBroker(port, pid_file=tmp_path / "tansu.pid")
        assert broker.stop_leftover() == pid
        assert _wait_gone([pid], 2) == []
        assert not _listening(port)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_pid_file_naming_another_program_is_left_alone(tmp_path):
    stranger = _orphan([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "tansu.pid").write_text(f"{stranger}\n")
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "orders.pid").write_text(f"{stranger}\n")
        assert EmbeddedBroker(free_port(), pid_file=tmp_path / "tansu.pid").stop_leftover() is None
        supervisor = Supervisor([], env={}, cwd=ROOT, console=None, run_dir=tmp_path / "run")
        assert supervisor.stop_leftovers() == []
        assert _alive(stranger)
    finally:
        os.kill(stranger, signal.SIGKILL)


def test_a_process_left_by_an_earlier_run_is_found_by_its_pid_file_and_stopped(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Its command line names the run directory, as a supervised process's does.
    leftover = _orphan([sys.executable, "-c", "import time; time.sleep(30)", str(run_dir / "users.files")])
    try:
        (run_dir / "users.pid").write_text(f"{leftover}\n")
        supervisor = Supervisor(
            [Spec("users", "x", (), "http://127.0.0.1:1/ready")], env={}, cwd=ROOT, console=None, run_dir=run_dir
        )
        assert supervisor.stop_leftovers() == [("users", leftover)]
        assert _wait_gone([leftover], 2) == []
    finally:
        if _alive(leftover):
            os.kill(leftover, signal.SIGKILL)


_ENDING = """
import atexit, sys
marks = sys.argv[1]


class Finalized:
    # What __del__ needs, kept on the object: teardown empties the module first.
    def __init__(self, path, opener=open):
        self.path, self.opener = path, opener

    def __del__(self):
        self.opener(self.path, "w").close()


kept = Finalized(marks + ".finalized")
atexit.register(lambda: open(marks + ".atexit", "w").close())
sys.stdout.write("a last line, not flushed")
sys.exit(int(sys.argv[2]))
"""


def _end(tmp_path, lifeline: bool) -> tuple[subprocess.CompletedProcess, Path]:
    (tmp_path / "ending.py").write_text(_ENDING)
    marks = tmp_path / ("lifeline" if lifeline else "plain")
    head = (
        [sys.executable, "-m", "goshop_devtools.lifeline", "--parent", str(os.getpid())]
        if lifeline
        else [sys.executable]
    )
    result = subprocess.run(
        [*head, "-m", "ending", str(marks), "3"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result, marks


def test_a_process_under_the_lifeline_ends_after_its_atexit_handlers_without_finalizing(tmp_path):
    result, marks = _end(tmp_path, lifeline=True)
    assert result.returncode == 3
    assert result.stdout == "a last line, not flushed"
    assert marks.with_suffix(".atexit").exists()
    # Teardown (and its CPU) skipped: the object is never collected.
    assert not marks.with_suffix(".finalized").exists()
    # Without the lifeline the same program is finalized: the test can tell.
    result, marks = _end(tmp_path, lifeline=False)
    assert result.returncode == 3
    assert marks.with_suffix(".finalized").exists()
