"""``make run``'s console: short lines for people, JSON for everything else."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import sys

import pytest

from goshop_common.observability import logs
from goshop_devtools.console import Console, choose_format
from goshop_devtools.supervisor import MAX_DELAY, STABLE_AFTER, Spec, Supervisor, describe_exit, next_delay

REQUEST = {"method": "POST", "path": "/v1/orders", "status": 201, "duration_ms": 12.4, "request_id": "a" * 32}


def _record(name="goshop.request", level=logging.INFO, msg="request", exc_info=None, **extra):
    record = logging.LogRecord(name, level, __file__, 1, msg, (), exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_request_is_one_short_line():
    line = logs.ConsoleFormatter().format(_record(**REQUEST))
    assert line == f"POST /v1/orders 201 12 ms rid={'a' * 32}"


HOSTILE = "/v1/x\n12:00:00 users | POST /v1/admin 200\x1b[2J\x1b[H\r\x7f\x9b"


@pytest.mark.parametrize(
    "formatter",
    [logs.ConsoleFormatter(), logs.ConsoleFormatter(color=True), logs.JsonFormatter()],
    ids=["console", "console in colour", "json"],
)
@pytest.mark.parametrize(
    "record",
    [
        _record(**{**REQUEST, "path": HOSTILE}),
        _record(name="waitress", level=logging.WARNING, msg=f"bad request {HOSTILE}"),
        _record(name="goshop.users", msg="login failed", email=HOSTILE, note=f"with space {HOSTILE}"),
    ],
    ids=["request path", "message", "fields"],
)
def test_a_clients_control_characters_are_escaped_in_every_log_format(formatter, record):
    line = formatter.format(record)
    # The formatter's own colours are the only escape sequences left.
    own = line.replace(logs._RESET, "").replace(logs._LEVEL_COLORS["WARNING"], "").replace(logs._DIM, "")
    assert "\n" not in line
    assert not [c for c in own if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0]
    assert "1b[2J" in line


def test_a_traceback_keeps_its_lines_but_not_a_clients_escape_sequences():
    try:
        raise ValueError("bad \x1b[2J value")
    except ValueError:
        record = _record(name="goshop.users", level=logging.ERROR, msg="boom", exc_info=sys.exc_info())
    line = logs.ConsoleFormatter().format(record)
    assert "\x1b" not in line
    assert "bad \\x1b[2J value" in line
    assert line.count("\n") >= 2


def test_json_mode_keeps_every_request_field():
    entry = json.loads(logs.JsonFormatter().format(_record(user_id="u1", **REQUEST)))
    assert set(entry) == {"ts", "level", "logger", "msg", *REQUEST, "user_id"}
    assert entry["duration_ms"] == 12.4
    assert entry["msg"] == "request"


def test_an_error_is_marked_and_carries_its_traceback():
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("goshop.orders", logging.ERROR, "could not settle", sys.exc_info(), order_id="o1")
    plain = logs.ConsoleFormatter().format(record)
    assert plain.startswith("ERROR could not settle order_id=o1\n")
    assert "ValueError: boom" in plain
    coloured = logs.ConsoleFormatter(color=True).format(record)
    assert coloured.startswith("\033[1;31mERROR could not settle")


def test_a_failed_request_has_its_status_coloured():
    line = logs.ConsoleFormatter(color=True).format(_record(**{**REQUEST, "status": 503}))
    assert "\033[1;31m503\033[0m" in line


def test_a_librarys_line_names_its_logger_and_quotes_values_with_spaces():
    line = logs.ConsoleFormatter().format(_record("kafka.coordinator", logging.WARNING, "rejoining", group="a b"))
    assert line == 'WARNING kafka.coordinator: rejoining group="a b"'


@pytest.mark.parametrize(
    ("path", "status", "shown"),
    [
        ("/ready", 200, False),
        ("/live", 200, False),
        ("/metrics", 200, False),
        ("/ready", 503, True),
        ("/v1/orders", 200, True),
    ],
)
def test_only_probes_that_succeed_are_hidden(path, status, shown):
    assert logs.QuietProbes().filter(_record(**{**REQUEST, "path": path, "status": status})) is shown


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("goshop").level, logging.getLogger("waitress").level)
    yield root
    root.handlers[:], _, _, _ = saved
    root.setLevel(saved[1])
    logging.getLogger("goshop").setLevel(saved[2])
    logging.getLogger("waitress").setLevel(saved[3])


def test_console_logging_keeps_goshop_at_info_and_libraries_at_warning(root_logging):
    stream = io.StringIO()
    root_logging.handlers[:] = [logging.StreamHandler(stream)]
    logging.getLogger("waitress").setLevel(logging.INFO)
    logs.use_console("INFO", color=False)
    logging.getLogger("kafka.cluster").info("Updated metadata")
    logging.getLogger("waitress").info("Serving")
    logging.getLogger("goshop.outboxer").info("event published", extra={"topic": "orders.events"})
    logging.getLogger("kafka.coordinator").warning("heartbeat failed")
    assert stream.getvalue().splitlines() == [
        "event published topic=orders.events",
        "WARNING kafka.coordinator: heartbeat failed",
    ]


def test_json_outside_production_keeps_libraries_at_warning_too(root_logging):
    from goshop_devtools.settings import settings_of

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root_logging.handlers[:] = [handler]
    root_logging.setLevel(logging.INFO)
    logging.getLogger("waitress").setLevel(logging.INFO)
    logs.apply(settings_of({}, environ={"GOSHOP_ENV": "development", "GOSHOP_LOG_FORMAT": "json"}))
    logging.getLogger("kafka.conn").info("connecting to 127.0.0.1:9092")
    logging.getLogger("waitress").info("Serving")
    logging.getLogger("goshop.outboxer").info("event published")
    logging.getLogger("kafka.coordinator").warning("heartbeat failed")
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["logger"], e["level"]) for e in entries] == [
        ("goshop.outboxer", "info"),
        ("kafka.coordinator", "warning"),
    ]


def test_production_logs_json_whatever_the_format_says(root_logging):
    from goshop_devtools.settings import settings_of

    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logs.JsonFormatter())
    root_logging.handlers[:] = [handler]
    settings = settings_of({}, environ={"GOSHOP_ENV": "development", "GOSHOP_LOG_FORMAT": "console"})
    logs.apply(settings)
    assert isinstance(handler.formatter, logs.ConsoleFormatter)
    handler.setFormatter(logs.JsonFormatter())
    production = type("S", (), {"log_format": "console", "production": True, "log_level": "INFO"})()
    logs.apply(production)
    assert isinstance(handler.formatter, logs.JsonFormatter)


def test_the_format_is_console_terminal_or_not_json_when_asked_and_in_production():
    assert choose_format({}) == "console"
    assert choose_format({"GOSHOP_LOG_FORMAT": "json"}) == "json"
    assert choose_format({"GOSHOP_LOG_FORMAT": "console"}) == "console"
    assert choose_format({"GOSHOP_ENV": "development"}) == "console"
    # Production's processes log JSON whatever they are told (logs.apply).
    assert choose_format({"GOSHOP_ENV": "production"}) == "json"
    assert choose_format({"GOSHOP_ENV": "production", "GOSHOP_LOG_FORMAT": "console"}) == "json"
    with pytest.raises(SystemExit, match="json or console"):
        choose_format({"GOSHOP_LOG_FORMAT": "pretty"})


def test_without_a_terminal_the_console_writes_the_same_plain_lines_and_a_pasteable_block():
    stream = io.StringIO()
    console = Console.for_terminal(stream, {}, ["users", "orders"])
    console.line("users", "POST /v1/users/login 200 40 ms rid=x")
    console.say("users exited with status 1", level="error")
    console.raw(["try it:", "  curl -s -d '{\"a\": 1}' http://127.0.0.1:8080; echo"])
    text = stream.getvalue()
    assert "\x1b" not in text
    assert not [line for line in text.splitlines() if line.lstrip().startswith(("{", "["))]
    lines = text.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d users +\| POST /v1/users/login 200 40 ms rid=x", lines[0])
    assert lines[1].endswith("| ERROR users exited with status 1")
    assert lines[2:] == ["try it:", "  curl -s -d '{\"a\": 1}' http://127.0.0.1:8080; echo"]
    assert console.pipes_children
    assert console.child_environment() == {"GOSHOP_LOG_FORMAT": "console", "PYTHONUNBUFFERED": "1"}


def test_every_console_line_has_a_time_and_a_fixed_width_name():
    stream = io.StringIO()
    console = Console(stream, "console", color=False, names=["users", "payments-consumer"])
    console.line("users", "POST /v1/users/login 200 40 ms rid=x")
    console.say("users exited with status 1", level="error")
    first, second = stream.getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d users {13}\| POST /v1/users/login 200 40 ms rid=x", first)
    assert re.fullmatch(r"\d\d:\d\d:\d\d goshop-dev {8}\| ERROR users exited with status 1", second)


def test_on_a_terminal_each_name_has_its_colour_and_children_are_told_to_colour():
    stream = _Tty()
    console = Console.for_terminal(stream, {}, ["users", "orders"])
    console.line("users", "a")
    console.line("orders", "b")
    users, orders = stream.getvalue().splitlines()
    assert users.startswith(console._colors["users"])
    assert orders.startswith(console._colors["orders"])
    assert console._colors["users"] != console._colors["orders"]
    assert console.child_environment() == {"GOSHOP_LOG_FORMAT": "console", "PYTHONUNBUFFERED": "1", "FORCE_COLOR": "1"}
    assert "FORCE_COLOR" not in Console.for_terminal(_Tty(), {"NO_COLOR": "1"}, ["users"]).child_environment()


def _rgb(code: str) -> tuple[int, int, int]:
    """The colour of a 256-colour foreground code, as xterm shows it."""
    index = int(re.fullmatch(r"\033\[38;5;(\d+)m", code).group(1))
    if index >= 232:
        grey = 8 + (index - 232) * 10
        return grey, grey, grey
    assert index >= 16, f"a basic colour ({index}) looks different on every terminal"
    steps = (0, 95, 135, 175, 215, 255)
    index -= 16
    return steps[index // 36], steps[index // 6 % 6], steps[index % 6]


def test_every_process_of_make_run_has_a_colour_of_its_own_never_a_warnings_or_an_errors():
    from goshop_devtools.run import PROCESSES

    names = [process.name for process in PROCESSES]
    console = Console(_Tty(), "console", color=True, names=names)
    colours = [console._colors[name] for name in [*names, "goshop-dev"]]
    assert len(names) == 9
    assert len(set(colours)) == len(colours)
    assert not set(colours) & {"\033[33m", "\033[1;31m", "\033[31m", "\033[93m", "\033[91m", "\033[32m"}
    for name in names:
        red, green, blue = _rgb(console._colors[name])
        # Yellow, orange and red: more red than blue, and red at least as strong as green.
        assert not (red > blue and red >= green), f"{name} looks like a warning or an error"


def test_in_json_mode_the_runners_own_lines_are_json_objects():
    stream = io.StringIO()
    console = Console(stream, "json", color=True, names=["users"])
    console.say("users killed by SIGKILL", level="error", process="users", code=-9)
    entry = json.loads(stream.getvalue())
    assert (entry["logger"], entry["level"], entry["process"], entry["code"]) == ("goshop.dev", "error", "users", -9)
    assert not console.pipes_children


def test_the_back_off_doubles_from_1_to_30_seconds_and_resets_after_a_stable_run():
    delays, delay = [], 0.0
    for _ in range(8):
        delay = next_delay(delay, uptime=0.5)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, MAX_DELAY, MAX_DELAY, MAX_DELAY]
    assert next_delay(MAX_DELAY, uptime=STABLE_AFTER) == 1


def test_an_exit_is_told_by_its_status_or_its_signal():
    assert describe_exit(1) == "exited with status 1"
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"


def test_a_change_reloads_the_processes_that_loaded_the_file_and_those_that_have_not_said(tmp_path):
    specs = [
        Spec("orders", "m", (), "u", files=("/src/goshop_orders/development.ini",)),
        Spec("payments", "m", (), "u"),
        Spec("gateway", "m", (), "u"),
    ]
    supervisor = Supervisor(specs, env={}, cwd=tmp_path, console=None, run_dir=tmp_path)
    (tmp_path / "orders.files").write_text("/src/goshop_common/db.py\n/src/goshop_orders/views.py")
    (tmp_path / "payments.files").write_text("/src/goshop_common/db.py\n/src/goshop_payments/views.py")

    def names(*paths):
        return [c.spec.name for c in supervisor.affected_by(set(paths))]

    # gateway has written no list yet: it may use anything.
    assert names("/src/goshop_orders/views.py") == ["orders", "gateway"]
    assert names("/src/goshop_common/db.py") == ["orders", "payments", "gateway"]
    assert names("/src/goshop_orders/development.ini") == ["orders", "gateway"]
    (tmp_path / "gateway.files").write_text("/src/goshop_gateway/views.py")
    assert names("/src/goshop_payments/views.py") == ["payments"]
    assert names("/src/goshop_ops/views.py") == []
