"""Log lines: JSON (one object a line, so logs can be grepped by id and shipped
as is) or, for a person at ``make run``'s terminal, one short line an event.

``GOSHOP_LOG_FORMAT`` chooses (``json`` by default, and always in production);
``make run`` asks for ``console`` unless told ``json``. Outside production,
libraries (kafka-python, waitress, ...) say only their warnings and errors,
in either format: kafka-python alone says a hundred INFO lines at a start.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import logging.handlers
import os
import queue
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from goshop_common.settings import BaseSettings

JSON = "json"
CONSOLE = "console"

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

REQUEST_LOGGER = "goshop.request"
# Probes and scrapes that succeed say nothing a person needs: make run itself
# polls /ready while processes start, and the gateway's /ready asks every upstream's.
_PROBE_PATHS = frozenset({"/live", "/ready", "/metrics", "/ready/details"})

_RESET = "\033[0m"
_LEVEL_COLORS = {"WARNING": "\033[33m", "ERROR": "\033[1;31m", "CRITICAL": "\033[1;31m"}
_DIM = "\033[2m"

# Control characters (C0, DEL, C1) as \xNN: a request path or a value a
# client chose (%0A, ESC[) must not start a line of its own on a terminal,
# nor move its cursor. A line's own colours are added after.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROLS_BUT_NEWLINE = {code: text for code, text in _CONTROLS.items() if code != 0x0A}


def printable(text: str) -> str:
    """``text`` with every control character written as ``\\xNN``."""
    return text.translate(_CONTROLS)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields, then — when the record was made inside a traced
    span (goshop_common.observability.tracing) and says no other — its
    ``trace_id`` and ``span_id``."""
    fields = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
    trace_id = getattr(record, "_trace_id", None)
    if trace_id is not None and "trace_id" not in fields:
        fields["trace_id"] = trace_id
        fields["span_id"] = getattr(record, "_span_id", None)
    return fields


@functools.lru_cache(maxsize=4)
def _second(epoch_second: int) -> str:
    # A busy process writes hundreds of lines a second: formatted once each.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_second))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: the time (UTC, milliseconds), level, logger and
    message, then every ``extra=`` field, and a traceback as ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": f"{_second(int(record.created))}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # default=str: a UUID or a datetime in ``extra=`` is written as its
        # text rather than losing the whole line to a TypeError. Control
        # characters are escaped (ensure_ascii: everything but printable ASCII).
        return json.dumps(entry, default=str)


def _value(value: object) -> str:
    # Quoted (as JSON, which escapes control characters) when empty or
    # holding a space or a quote, so that the line still reads as key=value
    # pairs.
    text = str(value)
    if not text or any(c.isspace() or c == '"' for c in text):
        return json.dumps(text)
    return printable(text)


class ConsoleFormatter(logging.Formatter):
    """``POST /v1/orders 201 12 ms rid=…`` for a request; otherwise the message
    and its fields as ``key=value``, a warning or an error marked (and coloured
    when ``color``), a library's logger named. No time or process name: the
    runner that shows the line adds them."""

    def __init__(self, color: bool = False):
        super().__init__()
        self.color = color

    def _paint(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.color and code else text

    def format(self, record: logging.LogRecord) -> str:
        fields = _extras(record)
        if record.name == REQUEST_LOGGER and {"method", "path", "status"} <= fields.keys():
            line = self._request(fields)
        else:
            parts = []
            if not record.name.startswith("goshop"):
                parts.append(f"{record.name}:")
            parts.append(printable(record.getMessage()))
            parts += [f"{key}={_value(value)}" for key, value in fields.items()]
            line = " ".join(parts)
        if record.levelno >= logging.WARNING:
            mark = _LEVEL_COLORS.get(record.levelname, "")
            line = self._paint(mark, f"{record.levelname} {line}")
        if record.exc_info:
            trace = self.formatException(record.exc_info).translate(_CONTROLS_BUT_NEWLINE)
            line += "\n" + self._paint(_LEVEL_COLORS["ERROR"], trace)
        return line

    def _request(self, fields: dict[str, Any]) -> str:
        status = int(fields["status"])
        code = _LEVEL_COLORS["ERROR"] if status >= 500 else _LEVEL_COLORS["WARNING"] if status >= 400 else ""
        line = f"{printable(str(fields['method']))} {printable(str(fields['path']))} {self._paint(code, str(status))}"
        if "duration_ms" in fields:
            line += f" {fields['duration_ms']:.0f} ms"
        if "request_id" in fields:
            line += self._paint(_DIM, f" rid={fields['request_id']}")
        if "trace_id" in fields:
            line += self._paint(_DIM, f" trace={fields['trace_id']}")
        return line


class QuietProbes(logging.Filter):
    """Drops the request lines of successful health probes and scrapes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != REQUEST_LOGGER:
            return True
        # A line without a status counts as a failure, and is shown.
        path, status = getattr(record, "path", None), getattr(record, "status", 500)
        return not (path in _PROBE_PATHS and isinstance(status, int) and status < 400)


def wants_color() -> bool:
    """Colour when the runner says its terminal shows it (FORCE_COLOR), unless NO_COLOR."""
    return bool(os.environ.get("FORCE_COLOR")) and not os.environ.get("NO_COLOR")


def quiet_libraries(level: str = "INFO") -> None:
    """goshop's loggers at ``level``, every library at WARNING (kafka-python
    alone says a dozen INFO lines a connection)."""
    logging.getLogger().setLevel(logging.WARNING)
    # The root's level does not quiet a library whose logger has a lower level
    # of its own (an ini's [logger_waitress] at INFO): those are raised too.
    # loggerDict also holds PlaceHolders, for dotted parents nobody asked for.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or name.startswith("goshop"):
            continue
        if logging.NOTSET < logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
    logging.getLogger("goshop").setLevel(level)


def use_console(level: str = "INFO", color: bool | None = None) -> None:
    """Switch the root logger's handlers to console lines, libraries quiet
    (quiet_libraries)."""
    formatter = ConsoleFormatter(wants_color() if color is None else color)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(formatter)
        # Once, however often use_console runs over the same handlers.
        if not any(isinstance(f, QuietProbes) for f in handler.filters):
            handler.addFilter(QuietProbes())
    quiet_libraries(level)


def apply(settings: BaseSettings) -> None:
    """After an ``.ini``'s logging config: console lines if the settings ask
    for them (never in production, whose logs are shipped as JSON), and
    outside production the libraries quiet in JSON too."""
    if settings.production:
        return
    if settings.log_format == CONSOLE:
        use_console(settings.log_level)
    else:
        quiet_libraries(settings.log_level)


class _InProcessQueueHandler(logging.handlers.QueueHandler):
    """Hands a record to the writer thread as it is. The stdlib's prepare()
    flattens a record for pickling: it formats the message with a plain
    Formatter and drops the exception, which would put a traceback inside a
    JSON line's ``msg`` instead of its ``exc``. This queue never leaves the
    process, so only the message is fixed now (its arguments could change
    before the writer gets to it)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg = record.getMessage()
        record.args = None
        return record


_writer: logging.handlers.QueueListener | None = None
# The hook _write_queued_lines_first hands an uncaught exception on to.
_previous_excepthook = sys.excepthook
# What write_in_background turns off, put back when the writer stops.
_RECORD_DETAILS = (logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing)


def write_in_background() -> None:
    """Write log lines from one thread of their own: the root logger's
    handlers move behind a queue, and a caller's ``log.info`` only enqueues.

    With eight waitress threads each writing its request line through the
    handler's lock and a ``write()``, the threads queue on that lock and on
    the GIL behind it (docs/adr/0002). At exit the thread writes what is
    queued, so a clean stop (SIGTERM) loses no line.
    Call it once the handlers are final (after ``apply``); calling it again
    first puts the handlers back."""
    global _writer, _previous_excepthook
    # The logging HOWTO's "Optimization": no line shows the caller's file and
    # line, thread or process, so records do not look them up (a stack walk
    # each, for the file and line).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    if _writer is not None:
        _stop_writer()
    handlers = list(root.handlers)
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    # respect_handler_level: a handler's own level still applies, as it did in
    # the logger's thread; each handler's filters run in handle().
    _writer = logging.handlers.QueueListener(lines, *handlers, respect_handler_level=True)
    root.handlers[:] = [_InProcessQueueHandler(lines)]
    _writer.start()
    if sys.excepthook is not _write_queued_lines_first:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _write_queued_lines_first


def _write_queued_lines_first(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
    """sys.excepthook while the writer runs: an exception nobody caught (a
    Ctrl-C's KeyboardInterrupt, say) has its traceback printed after the
    lines still queued, not in the middle of one of them on the same stderr
    (the interpreter writes the traceback's last line and its line feed
    apart, and a JSON line landed between them)."""
    _stop_writer()
    _previous_excepthook(kind, value, traceback)


def _stop_writer() -> None:
    global _writer
    writer, _writer = _writer, None
    if writer is None:
        return
    writer.stop()
    logging.getLogger().handlers[:] = list(writer.handlers)
    logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = _RECORD_DETAILS


atexit.register(_stop_writer)


def configure(level: str = "INFO", log_format: str = JSON, quiet: bool = False) -> None:
    """Log to stderr; for processes not started through an ``.ini``.
    ``quiet``: libraries at WARNING in JSON too (console lines always have them so)."""
    # The writer thread would keep the handlers this call replaces.
    _stop_writer()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    # Replaced, not added to: a second call does not print every line twice.
    root.handlers[:] = [handler]
    root.setLevel(level)
    # waitress warns ("Task queue depth is N") for every request that waits
    # for a thread: under load, a line per request, none an operator acts on.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    if log_format == CONSOLE:
        use_console(level)
    elif quiet:
        quiet_libraries(level)
