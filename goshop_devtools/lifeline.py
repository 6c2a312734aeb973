"""Processes that die with ``make run``, and the pid files that find the ones
that did not.

``python -m goshop_devtools.lifeline --parent PID [--files FILE] -m MODULE ARGS...``
runs ``MODULE`` as ``python -m`` would, after asking Linux to SIGKILL this
process when its parent dies (``prctl(PR_SET_PDEATHSIG)``): a runner killed by
``kill -9``, an IDE's stop button or a closed terminal takes its children with
it. ``-- PROGRAM ARGS...`` execs another program instead (the broker); the
signal survives ``execve``. It is set in the child, not in a ``preexec_fn``:
the runner has threads, and ``preexec_fn`` is not safe with threads.

With ``--files``, a thread writes the source files of the modules the process
has loaded to ``FILE`` whenever that set grows, so the runner restarts a
process only when a file it really uses changes (what hupper's worker tells
its monitor).

A process that ends (a stop, a reload) skips the interpreter's finalization
once its atexit handlers have run (``_exit_without_finalizing``): a full
garbage collection and module teardown in each of nine processes stopping
together on two cores outlast make run's 2 s grace for Ctrl-C. Only under
make run: production's processes finalize as usual.

Elsewhere than Linux there is no parent-death signal: the runner writes a pid
file per process, and the next start stops the leftovers whose command line
still names its data directory (``stop_leftover``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# From <linux/prctl.h>: neither ctypes nor the os module defines it.
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> bool:
    """SIGKILL this process when ``parent`` dies. False where Linux's prctl is
    missing. Exits at once if the parent is already gone (it may have died
    before the signal was armed)."""
    armed = False
    if sys.platform.startswith("linux"):
        # None: the C library this interpreter is already linked against.
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    # Checked after arming, not before: a parent that dies in between is then
    # caught by one or the other.
    if os.getppid() != parent:
        os._exit(1)
    return armed


def command(parent: int, module: str, args: list[str], *, files: Path | None = None) -> list[str]:
    """``python -m module args`` under a lifeline to ``parent``."""
    head = [sys.executable, "-m", __name__, "--parent", str(parent)]
    if files is not None:
        head += ["--files", str(files)]
    return [*head, "-m", module, *args]


def exec_command(parent: int, program: list[str]) -> list[str]:
    """``program`` (any executable) under a lifeline to ``parent``."""
    return [sys.executable, "-m", __name__, "--parent", str(parent), "--", *program]


def loaded_files(root: Path) -> set[str]:
    """Source files under ``root`` of the modules this process has imported."""
    prefix = str(root) + os.sep
    found = set()
    # A copy: the main thread may import (and grow sys.modules) while the
    # reporting thread iterates.
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.startswith(prefix):
            found.add(path)
    return found


def _report_files(target: Path, root: Path, interval: float = 1.0) -> None:
    """For the life of the process: rewrite ``target`` whenever the set of
    loaded files under ``root`` changes, looking every ``interval`` seconds."""
    written: set[str] = set()
    while True:
        current = loaded_files(root)
        if current != written:
            # Written aside, then renamed over the list: the runner never
            # reads half a list (goshop_devtools.supervisor._loaded).
            scratch = target.with_suffix(".tmp")
            scratch.write_text("\n".join(sorted(current)))
            scratch.replace(target)
            written = current
        time.sleep(interval)


# -- pid files ---------------------------------------------------------------


def write_pid_file(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")


def command_line(pid: int) -> str | None:
    """The process's command line, None if there is no such process."""
    if Path("/proc/self").exists():
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return None
    # No /proc (macOS): ps, from the PATH like any shell's.
    result = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def _gone(pid: int) -> bool:
    line = command_line(pid)
    if line is None:
        return True
    # A zombie (killed, not yet reaped by its parent) has an empty command line.
    return line == ""


def wait_gone(pid: int, timeout: float, interval: float = 0.05) -> bool:
    """Until process ``pid`` has exited (gone, or a zombie) or ``timeout``
    passes; whether it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _gone(pid):
        time.sleep(interval)
    return _gone(pid)


def stop_leftover(pid_file: Path, marker: str, grace: float = 2, first: int = signal.SIGKILL) -> int | None:
    """Stop the process ``pid_file`` names if it still runs and its command line
    contains ``marker`` (so a recycled pid is never touched); returns its pid,
    or None when there was nothing of ours to stop. The file is removed."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    # Whatever it names is handled now; the file is of no use afterwards.
    pid_file.unlink(missing_ok=True)
    line = command_line(pid)
    if not line or marker not in line:
        return None
    # ``first`` may be a gentler signal than SIGKILL (the broker's SIGINT);
    # what still runs after ``grace`` is killed below.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first)
    if not wait_gone(pid, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pid


def main(argv: list[str]) -> None:
    """The command line of the module docstring. Parsed by hand in a fixed
    order: everything after ``-m MODULE`` or ``--`` belongs to the program."""
    if "--parent" not in argv[:1]:
        raise SystemExit("usage: lifeline --parent PID [--files FILE] (-m MODULE ARGS... | -- PROGRAM ARGS...)")
    parent = int(argv[1])
    rest = argv[2:]
    files = None
    if rest[:1] == ["--files"]:
        files = Path(rest[1])
        rest = rest[2:]
    die_with_parent(parent)
    if rest[:1] == ["--"]:
        os.execvp(rest[1], rest[1:])  # noqa: S606 (the runner's own command line)
    if rest[:1] != ["-m"] or len(rest) < 2:
        raise SystemExit("lifeline: expected -m MODULE or -- PROGRAM")
    module = rest[1]
    if files is not None:
        # The repository root, where the goshop_* packages the runner watches live.
        root = Path(__file__).resolve().parents[1]
        threading.Thread(target=_report_files, args=(files, root), name="loaded-files", daemon=True).start()
    # What ``python -m`` would give the module: it reads its own arguments.
    sys.argv = [module, *rest[2:]]
    # Registered before the module registers any: atexit runs the last
    # registered first, so this one runs after all of them.
    atexit.register(_exit_without_finalizing)
    global _status
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        _status = exit_status(exc.code)
        raise
    _status = 0


# The status the module exits with; None while it runs, and after an uncaught
# exception (whose traceback and status are the interpreter's to give).
_status: int | None = None


def exit_status(code: object) -> int:
    """The status ``sys.exit(code)`` ends a process with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    # A message (printed by the interpreter): status 1.
    return 1


def _exit_without_finalizing() -> None:
    """The last atexit handler: the program's own have run (logs written,
    clients closed), so what is left is freeing memory the kernel frees
    anyway. Output is flushed first; non-daemon threads were joined before
    atexit began."""
    if _status is None:
        return
    # A handler registered before ours (none today) would be skipped: the
    # logging module's is the one that matters.
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(_status)


if __name__ == "__main__":
    main(sys.argv[1:])
