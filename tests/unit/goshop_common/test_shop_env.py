"""The command-line tools find make run's shop through its shop.env, and only
while that runner lives, only in development, only for what is not set."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from goshop_common import shop_env

DB = "postgresql://goshop:goshop@127.0.0.1:15433/goshop"
KAFKA = "127.0.0.1:19092"


@pytest.fixture
def running_shop(tmp_path) -> Iterator[Path]:
    """A data directory whose runner is alive: its lock held, its file written."""
    shop_env.write(tmp_path, {shop_env.DATABASE_URL: DB, shop_env.KAFKA_BOOTSTRAP: KAFKA})
    fd = os.open(tmp_path / shop_env.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield tmp_path
    finally:
        os.close(fd)


def test_the_tools_take_an_unset_address_from_a_live_runners_file(running_shop):
    environ, source = shop_env.cli_environ({"GOSHOP_DEV_DIR": str(running_shop)})
    assert environ[shop_env.DATABASE_URL] == DB
    assert environ[shop_env.KAFKA_BOOTSTRAP] == KAFKA
    assert source == running_shop.resolve() / "shop.env"


def test_a_variable_that_is_set_wins_over_the_file(running_shop):
    given = {"GOSHOP_DEV_DIR": str(running_shop), shop_env.DATABASE_URL: "postgresql://elsewhere/db"}
    environ, _ = shop_env.cli_environ(given)
    assert environ[shop_env.DATABASE_URL] == "postgresql://elsewhere/db"
    assert environ[shop_env.KAFKA_BOOTSTRAP] == KAFKA


@pytest.mark.parametrize("env", ["production", "test"])
def test_outside_development_the_file_is_never_read(running_shop, env):
    given = {"GOSHOP_DEV_DIR": str(running_shop), "GOSHOP_ENV": env}
    assert shop_env.cli_environ(given) == (given, None)


def test_a_file_left_by_a_dead_runner_is_ignored(tmp_path):
    # Written, but no runner holds the lock: a killed runner's leftover.
    shop_env.write(tmp_path, {shop_env.DATABASE_URL: DB})
    (tmp_path / shop_env.LOCK_NAME).write_text("4242\n")
    given = {"GOSHOP_DEV_DIR": str(tmp_path)}
    assert shop_env.cli_environ(given) == (given, None)
    assert not shop_env.runner_alive(tmp_path)


def test_no_data_directory_changes_nothing(tmp_path):
    given = {"GOSHOP_DEV_DIR": str(tmp_path / "none")}
    assert shop_env.cli_environ(given) == (given, None)


def test_the_file_is_its_owners_only_and_a_shell_loads_it(tmp_path):
    path = shop_env.write(tmp_path, {shop_env.DATABASE_URL: DB, shop_env.GATEWAY_URL: "http://127.0.0.1:18080"})
    # The database URL carries a password.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shell = subprocess.run(
        ["sh", "-c", f'set -a; . "{path}"; set +a; echo "$GOSHOP_DATABASE_URL $GOSHOP_GATEWAY_URL"'],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.split() == [DB, "http://127.0.0.1:18080"]
    assert shop_env.read(path)[shop_env.MARKER] == str(path)


def test_a_value_a_shell_could_not_load_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot write"):
        shop_env.write(tmp_path, {shop_env.DATABASE_URL: "postgresql://a:it's@h/db"})


def test_the_unreachable_line_names_the_address_the_setting_and_its_source(tmp_path):
    line = shop_env.not_reachable("broker", KAFKA, "Unable to bootstrap", "GOSHOP_KAFKA_BOOTSTRAP", None)
    assert line == (
        f"broker at {KAFKA} not reachable: Unable to bootstrap; is make run running? (GOSHOP_KAFKA_BOOTSTRAP)"
    )
    source = tmp_path / "shop.env"
    assert line.replace("BOOTSTRAP)", f"BOOTSTRAP from {source})") == shop_env.not_reachable(
        "broker", KAFKA, "Unable to bootstrap", "GOSHOP_KAFKA_BOOTSTRAP", source
    )
