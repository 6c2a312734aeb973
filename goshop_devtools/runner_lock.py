"""One ``make run`` per data directory.

A second runner of the same data directory would take the first one's live
processes, PostgreSQL and broker for leftovers of a dead run and stop them,
then fail on the ports they held. So a runner holds an exclusive
``flock`` on ``<data dir>/runner.lock`` for its whole life, its pid written
inside for the message a second one prints. The kernel drops the lock when
the runner dies, however it dies: a lock that can be taken means no runner
is alive, whatever pid the file names (pids are reused; locks are not).

The file stays when the runner stops: removing it would let a second runner
lock a new file while a third still waits on the old one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from goshop_common.shop_env import LOCK_NAME


class AlreadyRunning(Exception):
    """Another runner holds the data directory; ``pid`` is its pid, None if
    it has not written it yet."""

    def __init__(self, data_dir: Path, pid: int | None):
        self.data_dir = data_dir
        self.pid = pid
        super().__init__(f"another make run holds {data_dir}")

    def advice(self) -> str:
        """What to tell the person who started the second runner."""
        if self.pid is None:
            who, kill = "another make run", "kill it"
        else:
            who, kill = f"another make run (pid {self.pid})", f"kill {self.pid}"
        return (
            f"{who} is running the shop in {self.data_dir}. Stop it first (Ctrl-C in its terminal, or {kill}), "
            "or give this one a data directory and ports of its own "
            "(GOSHOP_DEV_DIR, GOSHOP_DEV_BASE_PORT, GOSHOP_DEV_PG_PORT, GOSHOP_DEV_KAFKA_PORT)."
        )


class RunnerLock:
    """The lock of ``data_dir``: ``acquire`` takes it or raises AlreadyRunning."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, patience: float = 0.5) -> None:
        """Take the lock and write this process's pid in it. A command-line
        tool checks whether a runner is alive by taking the lock shared for
        an instant (goshop_common.shop_env.runner_alive): a lock still busy
        after ``patience`` seconds is another runner's."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Not O_TRUNC: the pid inside belongs to whoever holds the lock.
        # Python's descriptors are not inherited (O_CLOEXEC): the lock is
        # the runner's alone, never held on by a process it started.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise AlreadyRunning(self.data_dir, self._holder()) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _holder(self) -> int | None:
        """The pid the holder wrote; None if it has not written it yet."""
        for _ in range(10):
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(self.path.read_text().split()[0])
            time.sleep(0.05)
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        # Emptied first: a pid in a free lock would only mislead.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None
