"""``make run``'s supervisor: it starts the shop's processes, restarts one
that dies, reloads the ones whose code changed, and stops them all together.

Not hupper per process: hupper's monitor outlives its worker ("Waiting for a
file to change before reload"), so a killed consumer would never be restarted
and a runner watching the monitor would see nothing wrong; and a
parent-death signal set in the monitor does not reach the worker it forks.
So each process is a direct child of the runner (under
``goshop_devtools.lifeline``: it dies with the runner, and tells which
source files it loaded), and the runner does hupper's other job with hupper's
own file monitor: a change to a file a process loaded restarts that process.

A child that exits without being asked, whatever its exit code, is restarted
after a back-off: 1 s, doubling up to 30 s, back to 1 s once it had stayed up
``STABLE_AFTER`` seconds. A code change restarts a waiting child at once: the
edit may be the fix.

A child with a ``live_url`` (the workers; a consumer's ``/live`` fails once it
has made no progress for ``GOSHOP_CONSUMER_STALL_SECONDS``) has it asked every
``LIVE_INTERVAL`` once ready: after ``LIVE_FAILURES`` failures in a row (a 503,
or no answer within ``LIVE_TIMEOUT``: a hung process) it is stopped as on
Ctrl-C and restarted like one that died, back-off included.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

from hupper.logger import SilentLogger
from hupper.reloader import find_default_monitor_factory

from goshop_devtools import lifeline
from goshop_devtools.console import Console

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
STABLE_AFTER = 10.0
# What a process gets to finish on SIGTERM before SIGKILL: the whole shop must
# be down within 3 s of Ctrl-C, broker and database included.
STOP_GRACE = 2.0
# How often ``run`` looks at its children: how late a restart, a reload or the
# SIGKILL after STOP_GRACE can be.
TICK = 0.05
# Editors write a file in several steps; one restart per burst of changes.
SETTLE = 0.3
# /live (Spec.live_url), asked from the probe thread, never from the loop. A
# consumer's 503 already means "no progress for GOSHOP_CONSUMER_STALL_SECONDS
# (60 s)": three in a row, 2 s apart, add little to that, and ride out one
# failed answer on a machine busy with something else.
LIVE_INTERVAL = 2.0
LIVE_FAILURES = 3
# Longer than a stalled consumer's /live may take to ask its database (a 3 s
# connect timeout) or its broker (2 s), which decide it stays live: a slow
# dependency must not pass for a hung process.
LIVE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Spec:
    """A process to supervise: ``python -m module args``; ready when
    ``ready_url`` answers 200; ``files`` it reads besides its modules (its ini).
    ``last``: started once every other process is ready (the gateway, whose
    /ready asks each upstream's: started with them, it would warn for each
    one not up yet). ``live_url``: once ready, restarted when it keeps
    failing there (LIVE_FAILURES)."""

    name: str
    module: str
    args: tuple[str, ...]
    ready_url: str
    files: tuple[str, ...] = ()
    last: bool = False
    live_url: str | None = None


@dataclass
class Child:
    """The runner's state of one supervised process, kept across its restarts.

    ``generation`` counts the spawns: a readiness probe or event of an earlier
    generation is ignored, so a process that died and came back is never
    taken for ready by its predecessor's probe. ``restart_at`` is set while
    it waits out its back-off (``delay``); ``kill_at`` while it was asked to
    stop and has until then before a SIGKILL."""

    spec: Spec
    popen: subprocess.Popen | None = None
    generation: int = 0
    started: float = 0.0
    ready: bool = False
    ever_ready: bool = False
    # Why the runner stopped it ("reload", "stop", "live"), None if it was not asked to.
    asked: str | None = None
    kill_at: float = 0.0
    restart_at: float | None = None
    delay: float = 0.0
    restarts: int = 0
    pumps: list = field(default_factory=list)


def describe_exit(code: int) -> str:
    """``exited with status 1`` / ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def live_failure(url: str, timeout: float) -> str | None:
    """Why ``url``, a /live, fails: its 503's reason, or no answer within
    ``timeout``; None when it answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 (loopback URL we built)
            return None
    except urllib.error.HTTPError as exc:
        # {"error": "not live: no progress for 61 s (12 events behind)"}
        try:
            error = json.loads(exc.read())["error"]
        except (ValueError, KeyError, TypeError, OSError):
            return f"answered {exc.code}"
        return str(error).removeprefix("not live: ")
    except (urllib.error.URLError, OSError) as exc:
        # A timeout while connecting comes wrapped in a URLError, one while
        # reading the answer as it is.
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            return f"no answer within {timeout:g} s"
        return f"no answer ({reason})"


def next_delay(previous: float, uptime: float) -> float:
    """The back-off before the next restart of a process that ran ``uptime`` seconds."""
    if previous <= 0 or uptime >= STABLE_AFTER:
        return FIRST_DELAY
    return min(previous * 2, MAX_DELAY)


class Supervisor:
    """Starts ``specs`` as direct children, restarts the ones that die,
    reloads the ones whose files change, and stops them all together.

    Only the thread in ``run`` changes the children's state: the probes
    (/ready, then /live) and the file monitor run on threads of their own and
    report through ``events``, which the loop drains each tick: a child that
    hangs never holds the loop up. ``kill_all`` is the
    exception, for a signal handler: it only sends signals."""

    def __init__(
        self,
        specs: list[Spec],
        *,
        env: dict,
        cwd: Path,
        console: Console,
        run_dir: Path,
        watch: list[str] | None = None,
    ):
        self.children = [Child(spec) for spec in specs]
        self.env = env
        # What one process is given on top of ``env``, by name (its database URL).
        self.process_env: dict[str, dict[str, str]] = {}
        self.cwd = cwd
        self.console = console
        self.run_dir = run_dir
        self.watch = watch
        self.events: queue.Queue = queue.Queue()
        self._monitor = None
        self._changed: set[str] = set()
        self._changed_at = 0.0
        self.on_all_ready: Callable[[], None] | None = None
        self._announced = False

    # -- files ---------------------------------------------------------------

    def _pid_file(self, child: Child) -> Path:
        return self.run_dir / f"{child.spec.name}.pid"

    def _files_file(self, child: Child) -> Path:
        return self.run_dir / f"{child.spec.name}.files"

    def stop_leftovers(self) -> list[tuple[str, int]]:
        """Stop the processes an earlier runner of this data directory left
        running (where no parent-death signal took them); (name, pid) each."""
        stopped = []
        for pid_file in sorted(self.run_dir.glob("*.pid")):
            # A child's command line names its ``.files`` list, which lives in
            # run_dir (see _spawn): a pid now used by another program lacks it.
            pid = lifeline.stop_leftover(pid_file, marker=str(self.run_dir))
            if pid is not None:
                stopped.append((pid_file.stem, pid))
        return stopped

    # -- starting --------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        spec = child.spec
        files = self._files_file(child)
        # The previous generation's list may not hold for the new code: until
        # the new process writes its own, it counts as using every file.
        files.unlink(missing_ok=True)
        argv = lifeline.command(os.getpid(), spec.module, list(spec.args), files=files)
        # In JSON mode the children write straight to the runner's output.
        pipe = subprocess.PIPE if self.console.pipes_children else None
        # A session of its own: the terminal's Ctrl-C reaches the runner only,
        # and the runner signals each process (with anything it started) as a group.
        child.popen = subprocess.Popen(
            argv,
            env={**self.env, **self.process_env.get(spec.name, {})},
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=pipe,
            stderr=subprocess.STDOUT if pipe else None,
            start_new_session=True,
        )
        # For the next start, should this runner die where no parent-death
        # signal takes its children along (stop_leftovers).
        lifeline.write_pid_file(self._pid_file(child), child.popen.pid)
        if pipe and child.popen.stdout is not None:  # stdout is a pipe when pipe is set
            child.pumps = [self.console.pump(spec.name, child.popen.stdout)]
        child.generation += 1
        child.started = time.monotonic()
        child.ready = False
        child.asked = None
        child.restart_at = None
        threading.Thread(
            target=self._probe, args=(child, child.generation, child.popen), name=f"probe-{spec.name}", daemon=True
        ).start()

    def _probe(self, child: Child, generation: int, popen: subprocess.Popen) -> None:
        """On its own thread: poll ``ready_url`` until it answers 200 (then
        tell the loop); then, with a ``live_url``, ask that every
        LIVE_INTERVAL and tell the loop once it failed LIVE_FAILURES times in
        a row. Until the process exits or a newer generation replaces it."""

        def current() -> bool:
            return popen.poll() is None and child.generation == generation

        while current():
            try:
                with urllib.request.urlopen(child.spec.ready_url, timeout=1) as response:  # noqa: S310 (loopback URL we built)
                    if response.status == 200:
                        self.events.put(("ready", child, generation))
                        break
            except (urllib.error.URLError, OSError):
                # Not listening yet, or answering 503: ask again.
                pass
            time.sleep(0.2)
        failures = 0
        while child.spec.live_url and current():
            time.sleep(LIVE_INTERVAL)
            reason = live_failure(child.spec.live_url, LIVE_TIMEOUT)
            failures = failures + 1 if reason else 0
            if failures >= LIVE_FAILURES and current():
                self.events.put(("not live", child, generation, reason))
                return

    def start_all(self) -> None:
        """Start every process but the ``last`` ones, which _became_ready
        starts once the others are ready; then watch the files, if asked to."""
        for child in self.children:
            if not child.spec.last:
                self._spawn(child)
        if self.watch:
            self._start_monitor()

    def _start_monitor(self) -> None:
        # The runner says what changed itself (_reload), in its own lines.
        logger = SilentLogger()
        factory = find_default_monitor_factory(logger)
        monitor = factory(lambda path: self.events.put(("changed", path)), interval=1, logger=logger)
        for pattern in self.watch or ():
            for path in glob(pattern, recursive=True):
                monitor.add_path(path)
        monitor.start()
        self._monitor = monitor

    # -- the loop --------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Supervise until ``should_stop()``."""
        while not should_stop():
            self._drain_events()
            now = time.monotonic()
            for child in self.children:
                self._check(child, now)
            # SETTLE counts from the first change of a burst (_drain_events),
            # so a steady stream of saves still reloads.
            if self._changed and now - self._changed_at >= SETTLE:
                self._reload(self._changed)
                self._changed = set()
            time.sleep(TICK)

    def _drain_events(self) -> None:
        """Apply what the probes and the file monitor reported since the last tick."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            if event[0] == "ready":
                self._became_ready(event[1], event[2])
            elif event[0] == "not live":
                self._not_live(event[1], event[2], event[3])
            elif event[0] == "changed":
                if not self._changed:
                    self._changed_at = time.monotonic()
                self._changed.add(event[1])

    def _became_ready(self, child: Child, generation: int) -> None:
        # A probe of a replaced generation, or of a process that has died
        # since it answered, says nothing about the process there is now.
        if child.generation != generation or child.popen is None or child.popen.poll() is not None:
            return
        child.ready = True
        took = time.monotonic() - child.started
        name = child.spec.name
        if not child.ever_ready:
            child.ever_ready = True
            self.console.say(f"{name} ready in {took:.1f} s", process=name, event="ready")
        else:
            self.console.say(f"{name} is back (ready in {took:.1f} s)", level="good", process=name, event="back")
        # Generation 0: never started. Started once, a ``last`` process is
        # supervised like any other, even while another one is not ready.
        waiting = [c for c in self.children if c.spec.last and c.generation == 0]
        if waiting and all(c.ready for c in self.children if not c.spec.last):
            for last in waiting:
                self._spawn(last)
        if not self._announced and all(c.ready for c in self.children):
            self._announced = True
            if self.on_all_ready is not None:
                self.on_all_ready()

    def _not_live(self, child: Child, generation: int, reason: str) -> None:
        """Stop a process that keeps failing its /live, as the stop path does
        (SIGTERM, SIGKILL after STOP_GRACE); _check restarts it once it has
        exited, after its back-off."""
        # A report on a replaced generation, or on a process that has exited
        # or is being stopped already, changes nothing.
        if child.generation != generation or child.popen is None or child.popen.poll() is not None or child.asked:
            return
        name = child.spec.name
        self.console.say(
            f"{name} failed /live: {reason}; restarting", level="error", process=name, event="not-live", reason=reason
        )
        child.asked = "live"
        child.kill_at = time.monotonic() + STOP_GRACE
        self._signal(child.popen, signal.SIGTERM)

    def _check(self, child: Child, now: float) -> None:
        """One tick for one child: SIGKILL one that outlived its grace after
        being asked to stop; restart one that exited (at once after a reload,
        after its back-off otherwise); start one whose back-off is over."""
        popen = child.popen
        if popen is not None:
            code = popen.poll()
            if code is None:
                if child.asked and now >= child.kill_at:
                    self._signal(popen, signal.SIGKILL)
                return
            self._reap(child)
            uptime = now - child.started
            if child.asked == "reload":
                # Asked for: no back-off, and no error line.
                self._spawn(child)
                return
            child.delay = next_delay(child.delay, uptime)
            child.restart_at = now + child.delay
            child.restarts += 1
            self.console.say(
                f"{child.spec.name} {describe_exit(code)} (pid {popen.pid}, up {uptime:.1f} s); "
                f"restarting in {child.delay:.0f} s",
                level="error",
                process=child.spec.name,
                event="exited",
                code=code,
            )
        elif child.restart_at is not None and now >= child.restart_at:
            self.console.say(f"restarting {child.spec.name}", process=child.spec.name, event="restarting")
            self._spawn(child)

    def _reap(self, child: Child) -> None:
        """Forget an exited process, once its output has been copied out."""
        for pump in child.pumps:
            # The pipe's last lines (a traceback) before the news of the exit.
            pump.join(timeout=0.2)
        child.pumps = []
        child.popen = None
        child.ready = False

    # -- reload ------------------------------------------------------------------

    def _loaded(self, child: Child) -> set[str] | None:
        """The files ``child`` uses: the modules its lifeline last reported
        plus its spec's ``files``; None while it has reported nothing."""
        try:
            files = set(self._files_file(child).read_text().split("\n"))
        except OSError:
            return None
        return files | set(child.spec.files)

    def affected_by(self, paths: set[str]) -> list[Child]:
        """The children that loaded one of ``paths``; one that has not said
        yet what it loaded counts as having loaded everything."""
        hit = []
        for child in self.children:
            loaded = self._loaded(child)
            if loaded is None or loaded & paths:
                hit.append(child)
        return hit

    def _reload(self, paths: set[str]) -> None:
        children = self.affected_by(paths)
        if not children:
            return
        shown = ", ".join(sorted(os.path.relpath(p, self.cwd) for p in paths)[:3])
        names = ", ".join(c.spec.name for c in children)
        self.console.say(f"{shown} changed: reloading {names}", event="reload", processes=names)
        now = time.monotonic()
        for child in children:
            # The edit may be the fix: the back-off starts afresh.
            child.delay = 0.0
            if child.popen is not None and child.popen.poll() is None:
                child.asked = "reload"
                child.kill_at = now + STOP_GRACE
                self._signal(child.popen, signal.SIGTERM)
            elif child.popen is None and child.generation > 0:
                # Waiting out its back-off: restarted now, not when the wait
                # ends. Generation 0 (a ``last`` one not started) stays waiting.
                self._spawn(child)

    # -- stopping ----------------------------------------------------------------

    @staticmethod
    def _signal(popen: subprocess.Popen, signum: int) -> None:
        # The whole group: each child leads a session of its own (_spawn), so
        # whatever it started goes with it. One already gone is no error.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signum)

    def kill_all(self) -> None:
        """SIGKILL every child at once. Safe in a signal handler: no locks, no output."""
        for child in self.children:
            if child.popen is not None:
                self._signal(child.popen, signal.SIGKILL)

    def stop_all(self, forced: Callable[[], bool] = lambda: False, grace: float = STOP_GRACE) -> list[str]:
        """SIGTERM every child together, SIGKILL what still runs after
        ``grace`` (or at once when ``forced()``); the names of those killed."""
        if self._monitor is not None:
            self._monitor.stop()
        running = [(c, c.popen) for c in self.children if c.popen is not None and c.popen.poll() is None]
        # All at once, not one after another: the grace is spent once for the
        # whole shop, which must be down within 3 s (STOP_GRACE).
        for child, popen in running:
            child.asked = "stop"
            self._signal(popen, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not forced():
            if all(popen.poll() is not None for _c, popen in running):
                break
            time.sleep(0.02)
        killed = []
        for child, popen in running:
            if popen.poll() is None:
                killed.append(child.spec.name)
                self._signal(popen, signal.SIGKILL)
        for child in self.children:
            if child.popen is not None:
                # Reaped before its pid file goes: a SIGKILLed process is not
                # gone the moment the signal is sent.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.popen.wait(5)
                self._reap(child)
            self._pid_file(child).unlink(missing_ok=True)
            self._files_file(child).unlink(missing_ok=True)
        return killed

    def pids(self) -> dict[str, int]:
        return {c.spec.name: c.popen.pid for c in self.children if c.popen is not None}
