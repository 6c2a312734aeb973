"""The goose-style migration CLI (``python -m goshop_users.migrate``) against a
real PostgreSQL: every test gets an empty database of its own, and ``create``
only ever writes into a copy of the migrations directory."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import io
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from goshop_common import shop_env
from goshop_common.db.migrate import MigrateError, alembic_config, create, status
from goshop_common.db.session import sqlalchemy_url
from goshop_devtools.postgres import free_port
from goshop_users.migrate import ALEMBIC_INI, main
from tests.support import create_roles

REPO_ROOT = Path(__file__).resolve().parents[3]
REAL_MIGRATIONS = REPO_ROOT / "goshop_users" / "migrations"

FIRST = "20250910121530"
SECOND = "20250919114711"
FIRST_FILE = f"{FIRST}_create_users.py"
SECOND_FILE = f"{SECOND}_sessions_and_login_failures.py"
THIRD = "20261201160000"
THIRD_FILE = f"{THIRD}_session_devices.py"
FOURTH = "20261201192000"
FOURTH_FILE = f"{FOURTH}_retention_indexes.py"
FIFTH = "20261206230000"
FIFTH_FILE = f"{FIFTH}_database_roles.py"
SIXTH = "20261207060000"
SIXTH_FILE = f"{SIXTH}_ops_reads_emails.py"
HEAD = SIXTH
FILES = [FIRST_FILE, SECOND_FILE, THIRD_FILE, FOURTH_FILE, FIFTH_FILE, SIXTH_FILE]
EVERY = len(FILES)
FIRST_TABLES = {"users"}
ALL_TABLES = {"users", "sessions", "login_failures"}


def pending_from(applied: int) -> list[tuple[str, str]]:
    """Every real revision's state when the first ``applied`` are applied."""
    return [(name, "Applied" if n < applied else "Pending") for n, name in enumerate(FILES)]


STATUS_LINE = re.compile(r"^\s+(Applied|Pending)\s+-- (\S+)$")


@pytest.fixture
def fresh_db(pg_server) -> Iterator[str]:
    """An empty database with the database roles (the migrations grant to
    them), dropped after the test."""
    url = pg_server.create_database("goshop_migrate")
    create_roles(url)
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def migrations_copy(tmp_path) -> Iterator[Path]:
    """A copy of the users migrations for ``create`` to write into. The real
    directory must come out of every test exactly as it went in."""
    copy = tmp_path / "migrations"
    shutil.copytree(REAL_MIGRATIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    yield copy
    assert real_revision_files() == FILES


def real_revision_files() -> list[str]:
    versions = REAL_MIGRATIONS / "versions"
    return sorted(path.name for path in versions.iterdir() if path.suffix in (".py", ".sql"))


def migrate(url: str, *argv: str, script_location: Path | None = None) -> int:
    location = ["--script-location", str(script_location)] if script_location else []
    return main(["--database-url", url, *location, *argv])


def states(url: str, script_location: Path | None = None) -> list[tuple[str, str]]:
    """What ``status`` reports, oldest first, as (file name, Applied|Pending)."""
    out = io.StringIO()
    config = alembic_config(ALEMBIC_INI, url, str(script_location) if script_location else None)
    status(config, out=out)
    return parse_status(out.getvalue())


def parse_status(text: str) -> list[tuple[str, str]]:
    rows = []
    for line in text.splitlines():
        match = STATUS_LINE.match(line)
        assert match, f"unexpected status line: {line!r}"
        rows.append((match.group(2), match.group(1)))
    return rows


def tables(url: str) -> set[str]:
    """The tables really present in the users schema, bar Alembic's own."""
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names(schema="users")) - {"alembic_version"}
    finally:
        engine.dispose()


def execute(url: str, sql: str, **params) -> list[tuple]:
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            result = connection.execute(sa.text(sql), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def insert_user(url: str, email: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    execute(
        url,
        "INSERT INTO users.users (id, email, password_hash) VALUES (:id, :email, 'not-a-hash')",
        id=user_id,
        email=email,
    )
    return user_id


# --- status, up, down, reset ---------------------------------------------------


def test_status_shows_every_revision_pending_then_applied_after_up(fresh_db, capsys):
    """Through ``main`` with capsys, the way a caller in the same process sees it."""
    assert main(["--database-url", fresh_db, "status"]) == 0
    assert parse_status(capsys.readouterr().out) == pending_from(0)
    assert tables(fresh_db) == set()

    assert main(["--database-url", fresh_db, "up"]) == 0
    capsys.readouterr()

    assert main(["--database-url", fresh_db, "status"]) == 0
    assert parse_status(capsys.readouterr().out) == pending_from(EVERY)
    assert tables(fresh_db) == ALL_TABLES


def test_status_lists_revisions_oldest_first_pending_then_applied_after_up(fresh_db):
    assert states(fresh_db) == pending_from(0)
    assert tables(fresh_db) == set()

    assert migrate(fresh_db, "up") == 0

    assert states(fresh_db) == pending_from(EVERY)
    assert tables(fresh_db) == ALL_TABLES


def test_status_command_prints_every_revision_to_stdout(fresh_db):
    """The CLI as a shell runs it, in a process of its own."""
    result = subprocess.run(
        [sys.executable, "-m", "goshop_users.migrate", "--database-url", fresh_db, "status"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert parse_status(result.stdout) == pending_from(0)


def session_columns(url: str) -> set[str]:
    rows = execute(
        url,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'users' AND table_name = 'sessions'",
    )
    return {name for (name,) in rows}


def retention_indexes(url: str) -> set[str]:
    """The indexes the last revision builds, as far as they exist and are valid."""
    rows = execute(
        url,
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'users' AND i.indisvalid AND c.relname IN"
        " ('ix_sessions_expires_at', 'ix_sessions_revoked_at', 'ix_login_failures_window_started_at')",
    )
    return {name for (name,) in rows}


RETENTION_INDEXES = {"ix_sessions_expires_at", "ix_sessions_revoked_at", "ix_login_failures_window_started_at"}


def users_role_may_write(url: str) -> bool:
    """Whether the users service's role may write its accounts (the database roles revision's grant)."""
    query = "SELECT has_table_privilege('goshop_users', 'users.users', 'INSERT')"
    return execute(url, query) == [(True,)]


def ops_role_may_read_emails(url: str) -> bool:
    """Whether the ops role may read accounts' emails (the last revision's grant)."""
    query = "SELECT has_column_privilege('goshop_ops', 'users.users', 'email', 'SELECT')"
    return execute(url, query) == [(True,)]


def test_down_rolls_back_only_the_last_revision_and_up_reapplies_it(fresh_db):
    assert migrate(fresh_db, "up") == 0
    assert ops_role_may_read_emails(fresh_db)

    assert migrate(fresh_db, "down") == 0
    assert tables(fresh_db) == ALL_TABLES
    assert not ops_role_may_read_emails(fresh_db)
    assert users_role_may_write(fresh_db)
    assert retention_indexes(fresh_db) == RETENTION_INDEXES
    assert states(fresh_db) == pending_from(EVERY - 1)

    assert migrate(fresh_db, "down") == 0
    assert not users_role_may_write(fresh_db)

    assert migrate(fresh_db, "up-to", FIFTH) == 0
    assert users_role_may_write(fresh_db)
    assert not ops_role_may_read_emails(fresh_db)
    assert migrate(fresh_db, "up") == 0
    assert ops_role_may_read_emails(fresh_db)
    assert states(fresh_db) == pending_from(EVERY)


def test_down_twice_drops_the_retention_indexes(fresh_db):
    assert migrate(fresh_db, "up") == 0

    assert migrate(fresh_db, "down-to", THIRD) == 0
    assert retention_indexes(fresh_db) == set()
    assert {"user_agent", "client_address"} <= session_columns(fresh_db)


def test_reset_rolls_back_every_revision(fresh_db):
    assert migrate(fresh_db, "up") == 0

    assert migrate(fresh_db, "reset") == 0
    assert tables(fresh_db) == set()
    assert execute(fresh_db, "SELECT version_num FROM users.alembic_version") == []
    assert states(fresh_db) == pending_from(0)


# --- up-to, down-to ------------------------------------------------------------


def test_up_to_applies_revisions_only_up_to_that_version(fresh_db):
    assert migrate(fresh_db, "up-to", FIRST) == 0
    assert tables(fresh_db) == FIRST_TABLES
    assert execute(fresh_db, "SELECT version_num FROM users.alembic_version") == [(FIRST,)]


def test_down_to_a_version_keeps_that_version_applied(fresh_db):
    assert migrate(fresh_db, "up") == 0

    assert migrate(fresh_db, "down-to", FIRST) == 0
    assert tables(fresh_db) == FIRST_TABLES
    assert states(fresh_db) == pending_from(1)


def test_down_to_zero_rolls_back_everything(fresh_db):
    assert migrate(fresh_db, "up") == 0

    assert migrate(fresh_db, "down-to", "0") == 0
    assert tables(fresh_db) == set()
    assert states(fresh_db) == pending_from(0)


# --- redo ----------------------------------------------------------------------


def test_redo_reapplies_only_the_last_revision(fresh_db):
    assert migrate(fresh_db, "up") == 0
    user_id = insert_user(fresh_db, "kept@example.com")
    # Redo revokes the last revision's grants and grants them again; the rows stay.
    session_id = uuid.uuid4()
    execute(
        fresh_db,
        "INSERT INTO users.sessions (id, user_id, current_jti, created_at, expires_at, user_agent)"
        " VALUES (:id, :user_id, :jti, now(), now() + interval '1 day', 'curl/8')",
        id=session_id,
        user_id=user_id,
        jti=uuid.uuid4(),
    )

    assert migrate(fresh_db, "redo") == 0

    assert tables(fresh_db) == ALL_TABLES
    assert states(fresh_db) == pending_from(EVERY)
    assert execute(fresh_db, "SELECT id, email FROM users.users") == [(user_id, "kept@example.com")]
    assert execute(fresh_db, "SELECT id, user_agent FROM users.sessions") == [(session_id, "curl/8")]
    assert users_role_may_write(fresh_db)


# --- what each command prints ----------------------------------------------------

STEP_LINE = re.compile(r"^(applied |reverted) (\S+) \((\d+\.\d) ms\)$")


def printed(capsys) -> tuple[list[tuple[str, str]], str]:
    """The steps a command printed, as (applied|reverted, file), and its last line."""
    lines = capsys.readouterr().out.splitlines()
    steps = []
    for line in lines[:-1]:
        match = STEP_LINE.match(line)
        assert match, f"not a step line: {line!r}"
        steps.append((match.group(1).strip(), match.group(2)))
    return steps, lines[-1]


def test_up_prints_each_applied_revision_with_its_duration_then_the_version(fresh_db, capsys):
    assert migrate(fresh_db, "up") == 0
    steps, last = printed(capsys)
    assert steps == [("applied", name) for name in FILES]
    assert re.fullmatch(rf"migrated to version {HEAD} \({len(FILES)} applied in \d+\.\d\d s\)", last)


def test_up_with_nothing_pending_says_there_is_nothing_to_run(fresh_db, capsys):
    assert migrate(fresh_db, "up") == 0
    capsys.readouterr()
    assert migrate(fresh_db, "up") == 0
    assert printed(capsys) == ([], f"no migrations to run; current version: {HEAD}")


def test_down_reset_redo_and_the_to_commands_print_what_they_reverted_and_applied(fresh_db, capsys):
    assert migrate(fresh_db, "up") == 0
    capsys.readouterr()

    assert migrate(fresh_db, "down") == 0
    steps, last = printed(capsys)
    assert steps == [("reverted", SIXTH_FILE)]
    assert last.startswith(f"migrated to version {FIFTH} (1 reverted in ")

    assert migrate(fresh_db, "redo") == 0
    steps, last = printed(capsys)
    assert steps == [("reverted", FIFTH_FILE), ("applied", FIFTH_FILE)]
    assert last.startswith(f"migrated to version {FIFTH} (1 reverted, 1 applied in ")

    assert migrate(fresh_db, "down-to", SECOND) == 0
    steps, last = printed(capsys)
    assert steps == [("reverted", FIFTH_FILE), ("reverted", FOURTH_FILE), ("reverted", THIRD_FILE)]
    assert last.startswith(f"migrated to version {SECOND} (3 reverted in ")

    assert migrate(fresh_db, "up-to", THIRD) == 0
    steps, last = printed(capsys)
    assert steps == [("applied", THIRD_FILE)]
    assert last.startswith(f"migrated to version {THIRD} (1 applied in ")

    assert migrate(fresh_db, "reset") == 0
    steps, last = printed(capsys)
    assert steps == [("reverted", THIRD_FILE), ("reverted", SECOND_FILE), ("reverted", FIRST_FILE)]
    # goose's version 0: before the first revision.
    assert last.startswith("migrated to version 0 (3 reverted in ")

    assert migrate(fresh_db, "reset") == 0
    assert printed(capsys) == ([], "no migrations to run; current version: 0")


# --- errors --------------------------------------------------------------------


def test_up_to_an_unknown_version_fails_and_changes_nothing(fresh_db, capsys):
    assert migrate(fresh_db, "up-to", "20991231235959") == 1
    assert "unknown version 20991231235959" in capsys.readouterr().err
    assert tables(fresh_db) == set()


def test_down_on_an_empty_database_fails_with_a_clear_message(fresh_db, capsys):
    assert migrate(fresh_db, "down") == 1
    assert "error: no migrations to roll back" in capsys.readouterr().err


def test_redo_on_an_empty_database_fails_with_a_clear_message(fresh_db, capsys):
    assert migrate(fresh_db, "redo") == 1
    assert "error: no migrations to redo" in capsys.readouterr().err
    assert tables(fresh_db) == set()


def test_down_to_a_version_not_yet_applied_fails_with_an_error(fresh_db, capsys):
    assert migrate(fresh_db, "up-to", FIRST) == 0

    assert migrate(fresh_db, "down-to", SECOND) == 1
    assert "error:" in capsys.readouterr().err
    assert tables(fresh_db) == FIRST_TABLES


@pytest.mark.parametrize(
    "argv",
    [["status"], ["up"], ["down"], ["reset"], ["redo"], ["up-to", FIRST], ["down-to", "0"]],
    ids=lambda argv: "-".join(argv),
)
def test_unreachable_database_fails_with_exit_code_1_and_one_line(argv, capsys):
    port = free_port()
    url = f"postgresql://goshop:a-password@127.0.0.1:{port}/goshop"

    assert migrate(url, *argv) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: database at 127.0.0.1:{port} not reachable: Connection refused; "
        "is make run running? (--database-url)\n"
    )


@contextlib.contextmanager
def a_running_shop_at(data_dir: Path, monkeypatch, database_url: str):
    """What make run leaves for the tools while it runs (goshop_common.shop_env):
    its addresses, and its lock held; no GOSHOP_DATABASE_URL of the caller's."""
    shop_env.write(data_dir, {shop_env.DATABASE_URL: database_url})
    lock = os.open(data_dir / shop_env.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    monkeypatch.delenv("GOSHOP_DATABASE_URL", raising=False)
    monkeypatch.delenv("GOSHOP_ENV", raising=False)
    monkeypatch.setenv("GOSHOP_DEV_DIR", str(data_dir))
    try:
        yield
    finally:
        os.close(lock)


def test_without_a_database_url_the_tool_uses_the_running_shops(fresh_db, tmp_path, monkeypatch, capsys):
    with a_running_shop_at(tmp_path, monkeypatch, fresh_db):
        assert main(["up"]) == 0
    assert tables(fresh_db) == ALL_TABLES


def test_a_dead_shops_address_is_named_with_its_file(tmp_path, monkeypatch, capsys):
    port = free_port()
    with a_running_shop_at(tmp_path, monkeypatch, f"postgresql://goshop:goshop@127.0.0.1:{port}/goshop"):
        assert main(["status"]) == 1
    assert capsys.readouterr().err == (
        f"error: database at 127.0.0.1:{port} not reachable: Connection refused; "
        f"is make run running? (GOSHOP_DATABASE_URL from {tmp_path.resolve() / 'shop.env'})\n"
    )


# --- create --------------------------------------------------------------------


def test_create_sql_writes_a_goose_file_that_up_and_down_apply(fresh_db, migrations_copy, capsys):
    versions = migrations_copy / "versions"
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)

    assert migrate(fresh_db, "create", "add_index", "sql", script_location=migrations_copy) == 0

    new = sorted(path.name for path in versions.glob("*_add_index.*"))
    assert len(new) == 2, new
    rev = new[0].split("_", 1)[0]
    assert new == [f"{rev}_add_index.py", f"{rev}_add_index.sql"]
    assert re.fullmatch(r"\d{14}", rev)
    stamp = dt.datetime.strptime(rev, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    assert before <= stamp <= dt.datetime.now(dt.UTC), "the revision id is the current UTC second"
    assert str(versions / f"{rev}_add_index.sql") in capsys.readouterr().out

    sql_file = versions / f"{rev}_add_index.sql"
    template = sql_file.read_text()
    assert re.search(r"^-- \+goose Up$", template, re.MULTILINE)
    assert re.search(r"^-- \+goose Down$", template, re.MULTILINE)
    assert template.index("-- +goose Up") < template.index("-- +goose Down")

    sql_file.write_text(
        "-- +goose Up\nCREATE TABLE users.created_by_test (id int);\n\n"
        "-- +goose Down\nDROP TABLE users.created_by_test;\n"
    )

    assert migrate(fresh_db, "up", script_location=migrations_copy) == 0
    assert tables(fresh_db) == ALL_TABLES | {"created_by_test"}
    assert states(fresh_db, migrations_copy)[-1] == (f"{rev}_add_index.py", "Applied")

    assert migrate(fresh_db, "down", script_location=migrations_copy) == 0
    assert tables(fresh_db) == ALL_TABLES
    assert states(fresh_db, migrations_copy) == [
        *pending_from(EVERY),
        (f"{rev}_add_index.py", "Pending"),
    ]


def test_create_sql_revision_follows_the_previous_head(migrations_copy):
    config = alembic_config(ALEMBIC_INI, script_location=str(migrations_copy))

    sql_path = create(config, "add_index", "sql", now=dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC))

    assert sql_path == migrations_copy / "versions" / "20300102030405_add_index.sql"
    scripts = ScriptDirectory.from_config(config)
    assert scripts.get_current_head() == "20300102030405"
    assert scripts.get_revision("20300102030405").down_revision == HEAD


def test_create_python_revision_follows_the_previous_head(fresh_db, migrations_copy, capsys):
    assert migrate(fresh_db, "create", "add_column", script_location=migrations_copy) == 0

    (py_file,) = (migrations_copy / "versions").glob("*_add_column.py")
    rev = py_file.name.split("_", 1)[0]
    assert re.fullmatch(r"\d{14}", rev)
    assert not py_file.with_suffix(".sql").exists()
    assert str(py_file) in capsys.readouterr().out

    scripts = ScriptDirectory.from_config(alembic_config(ALEMBIC_INI, script_location=str(migrations_copy)))
    assert scripts.get_current_head() == rev
    assert scripts.get_revision(rev).down_revision == HEAD

    # The generated (empty) revision runs.
    assert migrate(fresh_db, "up", script_location=migrations_copy) == 0
    assert states(fresh_db, migrations_copy)[-1] == (py_file.name, "Applied")
    assert tables(fresh_db) == ALL_TABLES


@pytest.mark.parametrize("second_kind", ["sql", "py"])
def test_create_twice_in_the_same_second_is_refused_and_leaves_a_usable_history(migrations_copy, second_kind):
    config = alembic_config(ALEMBIC_INI, script_location=str(migrations_copy))
    now = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    create(config, "first", "sql", now=now)

    with pytest.raises(MigrateError):
        create(config, "second", second_kind, now=now)

    scripts = ScriptDirectory.from_config(config)
    assert [rev.revision for rev in scripts.walk_revisions()] == [
        "20300102030405",
        SIXTH,
        FIFTH,
        FOURTH,
        THIRD,
        SECOND,
        FIRST,
    ]


def ruff(*args: str) -> subprocess.CompletedProcess:
    """The repository's ruff, with its ruff.toml, on a file outside the repository."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--config", str(REPO_ROOT / "ruff.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("kind", [(), ("sql",)], ids=["python", "sql"])
def test_a_created_revision_passes_the_linter_and_the_formatter_as_written(migrations_copy, kind, capsys):
    url = f"postgresql://goshop:goshop@127.0.0.1:{free_port()}/goshop"  # create never connects
    assert migrate(url, "create", "add a column", *kind, script_location=migrations_copy) == 0
    capsys.readouterr()
    [created] = [path for path in (migrations_copy / "versions").glob("*_add_a_column.py")]
    checked = ruff("check", str(created))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    formatted = ruff("format", "--check", "--diff", str(created))
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_create_rejects_an_unknown_kind_and_an_empty_name(migrations_copy, capsys):
    url = f"postgresql://goshop:goshop@127.0.0.1:{free_port()}/goshop"  # create never connects

    assert migrate(url, "create", "x", "bogus", script_location=migrations_copy) == 1
    assert "unknown migration type 'bogus'" in capsys.readouterr().err
    assert migrate(url, "create", "!!!", script_location=migrations_copy) == 1
    assert "needs a name" in capsys.readouterr().err
    assert sorted(path.name for path in (migrations_copy / "versions").glob("*.py")) == FILES


# --- plain Alembic -------------------------------------------------------------


def alembic(*args: str, env: dict) -> subprocess.CompletedProcess:
    """Plain ``alembic``, as a developer runs it from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_plain_alembic_upgrade_head_reads_goshop_database_url(fresh_db):
    env = {**os.environ, "GOSHOP_DATABASE_URL": fresh_db}

    result = alembic("-c", "goshop_users/alembic.ini", "upgrade", "head", env=env)

    assert result.returncode == 0, result.stderr
    assert tables(fresh_db) == ALL_TABLES
    assert execute(fresh_db, "SELECT version_num FROM users.alembic_version") == [(HEAD,)]


def ini_for(migrations: Path, tmp_path: Path, service: str = "users") -> Path:
    """The service's real alembic.ini, pointed at a copy of its migrations."""
    text = (REPO_ROOT / f"goshop_{service}" / "alembic.ini").read_text()
    text, count = re.subn(r"(?m)^script_location = .*$", f"script_location = {migrations}", text)
    assert count == 1
    ini = tmp_path / "alembic.ini"
    ini.write_text(text)
    return ini


def unreachable_url() -> str:
    return f"postgresql://goshop:goshop@127.0.0.1:{free_port()}/goshop"


def assert_timestamp_revision(path: Path, before: dt.datetime, down_revision: str) -> str:
    rev = path.name.split("_", 1)[0]
    assert re.fullmatch(r"\d{14}", rev), path.name
    stamp = dt.datetime.strptime(rev, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    assert before <= stamp <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2), "the id is the current UTC second"
    text = path.read_text()
    assert f'revision = "{rev}"' in text
    assert f'down_revision = "{down_revision}"' in text
    return rev


@pytest.mark.parametrize("service", ["users", "orders", "payments"])
def test_every_alembic_ini_runs_env_py_for_revision(service):
    """Otherwise plain ``alembic revision`` never reaches the timestamp hook."""
    config = alembic_config(REPO_ROOT / f"goshop_{service}" / "alembic.ini")
    assert config.get_alembic_boolean_option("revision_environment")


def test_plain_alembic_revision_gets_a_timestamp_id_without_a_database(migrations_copy, tmp_path):
    ini = ini_for(migrations_copy, tmp_path)
    env = {**os.environ, "GOSHOP_DATABASE_URL": unreachable_url()}
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def revision(message: str) -> subprocess.CompletedProcess:
        return alembic("-c", str(ini), "revision", "-m", message, env=env)

    result = revision("add column")
    assert result.returncode == 0, result.stderr
    (first,) = (migrations_copy / "versions").glob("*_add_column.py")
    first_rev = assert_timestamp_revision(first, before, down_revision=HEAD)

    # A second one, in the same second or not, gets an id of its own after it.
    result = revision("add another")
    assert result.returncode == 0, result.stderr
    (second,) = (migrations_copy / "versions").glob("*_add_another.py")
    second_rev = assert_timestamp_revision(second, before, down_revision=first_rev)
    assert second_rev > first_rev

    scripts = ScriptDirectory.from_config(alembic_config(ini))
    assert scripts.get_heads() == [second_rev]


def test_programmatic_revision_in_a_taken_second_takes_the_next_one(migrations_copy, monkeypatch):
    """Alembic's random id is replaced by the current second, or the next free
    one when a revision (here a goose ``.sql`` pair) already has it."""
    from alembic import command

    from goshop_common.db import migrations

    config = alembic_config(ALEMBIC_INI, unreachable_url(), script_location=str(migrations_copy))
    now = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    create(config, "first", "sql", now=now)

    class FrozenClock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return now

    monkeypatch.setattr(migrations.dt, "datetime", FrozenClock)
    config.attributes[migrations.NO_DATABASE] = True
    script = command.revision(config, message="second")

    assert Path(script.path).name == "20300102030406_second.py"
    assert script.down_revision == "20300102030405"


def test_alembic_revision_with_a_taken_rev_id_is_refused(migrations_copy, tmp_path):
    ini = ini_for(migrations_copy, tmp_path)
    env = {**os.environ, "GOSHOP_DATABASE_URL": unreachable_url()}
    result = alembic("-c", str(ini), "revision", "-m", "again", "--rev-id", SECOND, env=env)

    assert result.returncode != 0
    assert f"FAILED: a revision {SECOND} already exists" in result.stdout + result.stderr
    assert sorted(path.name for path in (migrations_copy / "versions").glob("*.py")) == FILES


def test_migrate_create_python_never_connects(migrations_copy):
    """``create`` runs env.py (revision_environment) but needs no database."""
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)

    assert migrate(unreachable_url(), "create", "add_column", script_location=migrations_copy) == 0

    (py_file,) = (migrations_copy / "versions").glob("*_add_column.py")
    assert_timestamp_revision(py_file, before, down_revision=HEAD)
