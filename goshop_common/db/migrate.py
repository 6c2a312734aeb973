"""The seed's goose commands on top of Alembic, for any service.

    python -m goshop_users.migrate status|up|down|reset|redo
    python -m goshop_users.migrate up-to VERSION | down-to VERSION
    python -m goshop_users.migrate create NAME [sql]

Like goose, every command that migrates prints a line per step, applied or
reverted, with its duration, then the version the schema is at::

    applied  20250910121530_create_users.py (41.2 ms)
    migrated to version 20250910121530 (1 applied in 0.04 s)

or ``no migrations to run; current version: 20250910121530`` (``0`` is
before the first revision).

Revision ids are timestamps (20250910121530), so ``up-to``/``down-to`` take the
same versions goose did; ``down-to 0`` rolls everything back. ``create NAME sql``
writes goose's one-file form (``-- +goose Up`` / ``-- +goose Down``) beside a
small revision that runs it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError

from goshop_common import shop_env
from goshop_common.settings import DatabaseSettings, SettingsError, load_settings

_SQL_TEMPLATE = """-- {name}
-- Keep the previous release working: add before you drop, backfill in steps.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
"""

_SQL_REVISION_TEMPLATE = '''"""{name}

Revision ID: {rev}
Revises: {down}
Runs the Up and Down sections of {sql_name}.
"""

from goshop_common.db.migrations import run_sql_file

revision = {rev_literal}
down_revision = {down_literal}
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file(__file__, "up")


def downgrade() -> None:
    run_sql_file(__file__, "down")
'''


def _literal(value: str | None) -> str:
    """``value`` as ruff format writes it (double quotes): a written revision
    passes ``make lint`` as it is. Revision ids are digits, never quotes."""
    return repr(value).replace("'", '"')


class MigrateError(Exception):
    """A command that cannot be carried out (an unknown version, nothing to
    roll back, a bad name): ``run`` prints it and returns 1."""


def alembic_config(ini_path: Path, database_url: str | None = None, script_location: str | None = None) -> Config:
    """The Alembic config of a service's ini. ``database_url`` reaches env.py
    through ``config.attributes``, where it wins over the environment and
    the ini (goshop_common.db.migrations.database_url)."""
    config = Config(str(ini_path))
    if database_url:
        config.attributes["database_url"] = database_url
    if script_location:
        config.set_main_option("script_location", script_location)
    return config


def _url(config: Config) -> str:
    from goshop_common.db.migrations import database_url

    return database_url(config)


def current_heads(config: Config) -> tuple[str, ...]:
    """The revisions the schema is at (none before the first, several on a
    branched history)."""
    schema = config.get_main_option("goshop.schema")
    engine = sa.create_engine(_url(config), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            # The version table is in the service's own schema, not in public.
            context = MigrationContext.configure(connection, opts={"version_table_schema": schema})
            return tuple(sorted(context.get_current_heads()))
    finally:
        engine.dispose()


def applied_revisions(config: Config) -> set[str]:
    """Every revision that is applied: the current heads and their ancestors."""
    scripts = ScriptDirectory.from_config(config)
    heads = current_heads(config)
    applied: set[str] = set()
    for head in heads:
        applied.update(rev.revision for rev in scripts.iterate_revisions(head, "base"))
    return applied


def status(config: Config, out: TextIO | None = None) -> list[tuple[str, str]]:
    """Print every revision, oldest first, as Applied or Pending."""
    out = out or sys.stdout
    scripts = ScriptDirectory.from_config(config)
    applied = applied_revisions(config)
    rows = []
    # walk_revisions goes from the heads down; goose lists the oldest first.
    for rev in reversed(list(scripts.walk_revisions())):
        state = "Applied" if rev.revision in applied else "Pending"
        rows.append((rev.revision, state))
        print(f"    {state:<8} -- {Path(rev.path).name}", file=out)
    return rows


def _known(config: Config, version: str) -> str:
    """``version`` as an Alembic target: goose's ``0`` (and ``base``) is
    before the first revision; anything else must be in this history."""
    if version in ("0", "base"):
        return "base"
    scripts = ScriptDirectory.from_config(config)
    try:
        known = scripts.get_revision(version) is not None
    except Exception:
        # Alembic has several errors for a malformed, ambiguous or unknown
        # id; to the user each one means the same.
        known = False
    if not known:
        raise MigrateError(f"unknown version {version}")
    return version


def create(config: Config, name: str, kind: str = "py", now: dt.datetime | None = None) -> Path:
    """Write a new revision named after the current UTC second."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        raise MigrateError("a migration needs a name of letters or digits")
    rev = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d%H%M%S")
    scripts = ScriptDirectory.from_config(config)
    if list(Path(scripts.versions).glob(f"{rev}_*")):
        # Ids are seconds; a second revision in the same second would loop the history.
        raise MigrateError(f"a revision {rev} already exists; wait a second and create again")
    if kind == "py":
        from goshop_common.db.migrations import NO_DATABASE

        # env.py runs for a revision (revision_environment); this one needs no database.
        config.attributes[NO_DATABASE] = True
        try:
            script = command.revision(config, message=name, rev_id=rev)
        finally:
            config.attributes.pop(NO_DATABASE, None)
        if not isinstance(script, Script):  # one head, no autogenerate: always one Script
            raise MigrateError(f"alembic wrote no single revision for {name!r}")
        return Path(script.path)
    if kind != "sql":
        raise MigrateError(f"unknown migration type {kind!r}: use sql or leave it out")
    versions = Path(scripts.versions)
    sql_path = versions / f"{rev}_{slug}.sql"
    py_path = sql_path.with_suffix(".py")
    if py_path.exists() or sql_path.exists():
        raise MigrateError(f"{py_path.name} already exists")
    # It follows the one head: with several, get_current_head raises a
    # CommandError, which run() reports.
    down = scripts.get_current_head()
    sql_path.write_text(_SQL_TEMPLATE.format(name=name))
    py_path.write_text(
        _SQL_REVISION_TEMPLATE.format(
            name=name,
            rev=rev,
            down=down,
            sql_name=sql_path.name,
            rev_literal=_literal(rev),
            down_literal=_literal(down),
        )
    )
    return sql_path


class StepReport:
    """What a migrating command prints: a line per step as Alembic finishes
    it (goshop_common.db.migrations.ON_STEP), then ``finish``'s line."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.applied = self.reverted = 0
        self.started = time.perf_counter()

    def __call__(self, step: MigrationInfo, seconds: float) -> None:
        if step.is_upgrade:
            self.applied += 1
        else:
            self.reverted += 1
        revision = step.up_revision
        name = Path(revision.path).name if isinstance(revision, Script) and revision.path else step.up_revision_id
        verb = "applied " if step.is_upgrade else "reverted"
        # Flushed: a caller reading a pipe (make run) sees each step as it ends.
        print(f"{verb} {name} ({seconds * 1000:.1f} ms)", file=self.out, flush=True)

    def finish(self, heads: tuple[str, ...]) -> None:
        version = ", ".join(heads) or "0"
        if not (self.applied or self.reverted):
            print(f"no migrations to run; current version: {version}", file=self.out, flush=True)
            return
        counts = [f"{n} {what}" for n, what in ((self.reverted, "reverted"), (self.applied, "applied")) if n]
        took = time.perf_counter() - self.started
        print(f"migrated to version {version} ({', '.join(counts)} in {took:.2f} s)", file=self.out, flush=True)


def run(argv: list[str], ini_path: Path, prog: str) -> int:
    """``python -m goshop_<service>.migrate``: 0 when done, 1 when the
    command failed, 2 for bad settings (and argparse exits 2 on bad usage)."""
    parser = argparse.ArgumentParser(prog=prog, description="goose-style migrations for one goshop service")
    parser.add_argument("--database-url", help="overrides GOSHOP_DATABASE_URL and the ini")
    parser.add_argument("--script-location", help=argparse.SUPPRESS)
    parser.add_argument("command", choices=["status", "up", "down", "reset", "up-to", "down-to", "redo", "create"])
    parser.add_argument("args", nargs="*")
    options = parser.parse_args(argv)

    # In development, make run's database wherever it is (goshop_common.shop_env).
    environ, source = shop_env.cli_environ()
    try:
        database_url = options.database_url or load_settings(DatabaseSettings, environ=environ).database_url
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = alembic_config(ini_path, database_url, options.script_location)
    cmd, args = options.command, options.args
    # How many arguments each command takes: create's second is the kind (sql).
    expected = {"up-to": 1, "down-to": 1, "create": (1, 2)}.get(cmd, 0)
    if (isinstance(expected, int) and len(args) != expected) or (
        isinstance(expected, tuple) and len(args) not in expected
    ):
        parser.error(f"{cmd}: wrong number of arguments")

    from goshop_common.db.migrations import ON_STEP

    report = StepReport()
    config.attributes[ON_STEP] = report
    try:
        if cmd == "status":
            status(config)
        elif cmd == "up":
            command.upgrade(config, "head")
        elif cmd == "down":
            # At base, "-1" would fail in Alembic's words rather than these.
            if not applied_revisions(config):
                raise MigrateError("no migrations to roll back")
            command.downgrade(config, "-1")
        elif cmd == "reset":
            command.downgrade(config, "base")
        elif cmd == "up-to":
            command.upgrade(config, _known(config, args[0]))
        elif cmd == "down-to":
            command.downgrade(config, _known(config, args[0]))
        elif cmd == "redo":
            if not applied_revisions(config):
                raise MigrateError("no migrations to redo")
            # goose's redo: roll back the latest revision, then apply it again.
            command.downgrade(config, "-1")
            command.upgrade(config, "+1")
        elif cmd == "create":
            path = create(config, args[0], args[1] if len(args) > 1 else "py")
            print(f"created {path}")
        if cmd not in ("status", "create"):
            report.finish(current_heads(config))
    except (MigrateError, CommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except sa.exc.OperationalError as exc:
        setting = "--database-url" if options.database_url else shop_env.DATABASE_URL
        print(f"error: {_database_error(exc, database_url, setting, source)}", file=sys.stderr)
        return 1
    return 0


def _database_error(exc: sa.exc.OperationalError, url: str, setting: str, source: Path | None) -> str:
    """One line: the driver's own reason (exc.orig), without SQLAlchemy's
    wrapping or libpq's second line of advice."""
    reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    if getattr(exc.orig, "pgcode", None) is not None:
        # The server answered (a timeout, a lock): it is reachable.
        return f"the database failed: {reason}"
    parts = urlsplit(url)
    # Host and port only: the URL's password stays off the screen.
    address = f"{parts.hostname}:{parts.port or 5432}"
    # libpq: 'connection to server at "127.0.0.1", port 5433 failed: Connection refused'.
    reason = reason.split(" failed: ", 1)[-1]
    return shop_env.not_reachable("database", address, reason, setting, source if setting != "--database-url" else None)
