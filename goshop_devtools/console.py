"""What ``make run`` prints, and how its processes' lines reach the screen.

``console`` (the default, terminal or not): every line is ``HH:MM:SS name |
text``, the name in a fixed-width column (foreman's and honcho's layout), the
runner's own lines under ``goshop-dev``; each child's output is read from a
pipe and prefixed. On a terminal each name has a colour of its own, never a
warning's (yellow) or an error's (red); elsewhere (an IDE's run pane, ``| tee``)
the same lines come without colour, so they read and paste as they are.
``json`` (``GOSHOP_LOG_FORMAT=json``, and always with ``GOSHOP_ENV=production``,
whose processes log JSON whatever they are told): children write their JSON
lines straight to the runner's output, and the runner's own lines are JSON
objects too (logger ``goshop.dev``), so a log shipper sees nothing else.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import IO

from goshop_common.observability.logs import CONSOLE, JSON

RUNNER = "goshop-dev"
_RESET = "\033[0m"
_BOLD = "\033[1m"
_LEVEL_COLORS = {"error": "\033[1;31m", "warning": "\033[33m", "good": "\033[32m"}
# One a process, in make run's order (nine of them), from the 256-colour
# palette: blues, greens, purples, a grey; no yellow, orange or red, which
# mark warnings and errors (goshop_common.observability.logs too), and none
# the "good" green. The runner's own name is bold instead.
_NAME_COLORS = tuple(
    f"\033[38;5;{code}m"
    for code in (
        39,  # deep sky blue
        35,  # spring green
        141,  # light purple
        44,  # turquoise
        71,  # sea green
        177,  # violet
        69,  # cornflower blue
        247,  # grey
        51,  # cyan
    )
)


def choose_format(environ: Mapping[str, str]) -> str:
    """JSON in production (its processes log nothing else), else
    ``GOSHOP_LOG_FORMAT`` if set, else console: a terminal or not, a person
    is reading (an IDE's run pane, ``make run | tee``); a log shipper asks."""
    chosen = environ.get("GOSHOP_LOG_FORMAT", "").strip()
    if chosen and chosen not in (JSON, CONSOLE):
        raise SystemExit(f"goshop-dev: GOSHOP_LOG_FORMAT must be json or console; got {chosen!r}")
    if environ.get("GOSHOP_ENV", "").strip() == "production":
        return JSON
    return chosen or CONSOLE


class Console:
    """``make run``'s output: the runner's own lines (``say``, ``block``,
    ``raw``) and, in console mode, its children's (``pump``), each line
    written whole under one lock."""

    def __init__(self, stream: IO, log_format: str, color: bool, names: list[str]):
        self.stream = stream
        self.format = log_format
        # A JSON line never carries colour codes, whatever the terminal.
        self.color = color and log_format == CONSOLE
        # The runner's name is in the column too, so every ``|`` lines up.
        self.width = max(len(name) for name in [RUNNER, *names])
        self._colors = {name: _NAME_COLORS[i % len(_NAME_COLORS)] for i, name in enumerate(names)}
        self._colors[RUNNER] = _BOLD
        # Reentrant: a line is written whole, and the threads pumping children's
        # output never interleave inside one.
        self._lock = threading.RLock()

    @classmethod
    def for_terminal(cls, stream: IO, environ: Mapping[str, str], names: list[str]) -> Console:
        """The console for ``stream``: its format from choose_format, colour
        only on a terminal and only without ``NO_COLOR`` (no escape codes in
        a pipe or a file)."""
        log_format = choose_format(environ)
        color = stream.isatty() and not environ.get("NO_COLOR")
        return cls(stream, log_format, color, names)

    @property
    def pipes_children(self) -> bool:
        """Whether the children's output comes through the runner (console
        mode, to be prefixed) rather than straight to its stream (JSON)."""
        return self.format == CONSOLE

    def child_environment(self) -> dict[str, str]:
        """What the children need to write lines this console shows well."""
        env = {"GOSHOP_LOG_FORMAT": self.format}
        if self.format == CONSOLE:
            # Their stdout is a pipe to the runner, which Python block-buffers:
            # a printed line would show up late, or never for a killed process.
            env["PYTHONUNBUFFERED"] = "1"
            if self.color:
                # A child sees a pipe, not the terminal, so it cannot tell
                # for itself (goshop_common.observability.logs.wants_color).
                env["FORCE_COLOR"] = "1"
        return env

    def _prefix(self, name: str) -> str:
        label = f"{time.strftime('%H:%M:%S')} {name:<{self.width}} |"
        if self.color:
            return f"{self._colors.get(name, '')}{label}{_RESET} "
        return f"{label} "

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                # The reader has gone, or the stream is closed (ValueError):
                # a lost line must not break the shutdown that follows.
                pass

    def say(self, message: str, level: str = "info", process: str | None = None, **fields) -> None:
        """One line of the runner's own. ``level``: info, good, warning, error."""
        if self.format == JSON:
            entry = {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
                # "good" only colours a console line; JSON levels are logging's.
                "level": "info" if level == "good" else level,
                "logger": "goshop.dev",
                "msg": message,
            }
            if process:
                entry["process"] = process
            entry.update(fields)
            self._write(json.dumps(entry, default=str) + "\n")
            return
        if self.color and level in _LEVEL_COLORS:
            message = f"{_LEVEL_COLORS[level]}{message}{_RESET}"
        elif level in ("error", "warning"):
            # Without colour, the level is spelled out in front instead.
            message = f"{level.upper()} {message}"
        self._write(self._prefix(RUNNER) + message + "\n")

    def block(self, lines: list[str]) -> None:
        """Several lines of the runner's, kept together."""
        with self._lock:
            for line in lines:
                self.say(line)

    def raw(self, lines: list[str]) -> None:
        """Lines without the prefix (console only): commands to copy as they are."""
        self._write("".join(f"{line}\n" for line in lines))

    def line(self, name: str, text: str) -> None:
        """One line of process ``name``'s output, under its prefix."""
        self._write(self._prefix(name) + text + "\n")

    def pump(self, name: str, pipe: IO[bytes]) -> threading.Thread:
        """Copy ``pipe``'s lines to the screen under ``name`` until it closes."""

        def copy():
            with pipe:
                for raw in iter(pipe.readline, b""):
                    # "replace": a child's stray bytes must not end the copy.
                    self.line(name, raw.decode("utf-8", "replace").rstrip("\r\n"))

        thread = threading.Thread(target=copy, name=f"output-{name}", daemon=True)
        thread.start()
        return thread
