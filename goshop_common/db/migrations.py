"""What every service's Alembic ``env.py`` does, written once.

Each service migrates its own schema and keeps its own version table there, so
services migrate independently. The database URL comes from, in order: the
caller (``config.attributes["database_url"]``), ``GOSHOP_DATABASE_URL``, the
ini's ``sqlalchemy.url``.

Revision ids are UTC timestamps (20250910121530) however a revision is made:
``alembic revision`` runs this env (``revision_environment = true``) and
:func:`timestamp_revision_ids` replaces Alembic's random id. A plain revision
(or merge) needs no database, so none is connected for it.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import context
from alembic.util import CommandError

from goshop_common.db.roles import MIGRATION
from goshop_common.db.session import sqlalchemy_url

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.operations.ops import MigrationScript
    from alembic.runtime.migration import MigrationContext, MigrationInfo
    from alembic.script import ScriptDirectory

    from goshop_common.db.alembic_op import Op

# Fail fast rather than queue behind a long transaction holding a lock that a
# DDL statement needs: a stuck migration blocks every query behind it.
LOCK_TIMEOUT = "5s"
STATEMENT_TIMEOUT = "120s"


def database_url(config: Config) -> str:
    """The URL to migrate, in the order the module docstring gives, with the
    psycopg2 driver named."""
    url = (
        config.attributes.get("database_url")
        or os.environ.get("GOSHOP_DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise CommandError("no database to migrate: set GOSHOP_DATABASE_URL (or the ini's sqlalchemy.url)")
    return sqlalchemy_url(url)


log = logging.getLogger(__name__)

# Set by a caller of ``command.revision`` (goshop_common.db.migrate.create)
# that writes a revision without autogenerate, so env.py connects to nothing.
NO_DATABASE = "goshop.no_database"

# Set by a caller that reports each step (goshop_common.db.migrate.run): a
# callable given the step's alembic MigrationInfo and how long it took, in seconds.
ON_STEP = "goshop.on_step"

REVISION_ID = re.compile(r"\d{14}")
_REVISION_FORMAT = "%Y%m%d%H%M%S"


def _existing_revision_ids(script: ScriptDirectory) -> set[str]:
    """Every revision id in the history, and every id a file in a versions
    directory is named after (a goose ``.sql`` file included)."""
    ids = {rev.revision for rev in script.walk_revisions(base="base", head="heads")}
    ids.update(path.name.split("_", 1)[0] for path in Path(script.versions).glob("*_*"))
    return ids


def timestamp_revision_ids(
    migration_context: MigrationContext, revision: object, directives: list[MigrationScript]
) -> None:
    """``process_revision_directives``: a new revision is named after the
    current UTC second, as ``migrate create`` names it. An id that is already
    a timestamp (``--rev-id``, ``migrate create``) is kept, unless it is taken."""
    if migration_context.script is None:  # Alembic's revision commands always set it
        raise CommandError("no script directory to name the revision in")
    taken = _existing_revision_ids(migration_context.script)
    for script in directives:
        rev_id = script.rev_id
        if rev_id is not None and REVISION_ID.fullmatch(rev_id):
            if rev_id in taken:
                raise CommandError(f"a revision {rev_id} already exists; wait a second and create again")
        else:
            stamp = dt.datetime.now(dt.UTC).replace(microsecond=0)
            # Ids are seconds: a second revision in the same second takes the next free one.
            while (new_id := stamp.strftime(_REVISION_FORMAT)) in taken:
                stamp += dt.timedelta(seconds=1)
            log.info("revision id %s (UTC timestamp) instead of %s", new_id, script.rev_id)
            script.rev_id = rev_id = new_id
        taken.add(rev_id)


def _needs_no_database(config: Config) -> bool:
    """A plain ``revision`` or a ``merge`` only writes a file."""
    if config.attributes.get(NO_DATABASE):
        return True
    # cmd_opts is the alembic command line's parsed namespace; a command
    # called from Python has none, which is why NO_DATABASE exists.
    cmd = getattr(config.cmd_opts, "cmd", None)
    name = getattr(cmd[0], "__name__", None) if cmd else None
    if name == "revision":
        return not getattr(config.cmd_opts, "autogenerate", False)
    return name == "merge"


def _timed(report: Callable[[MigrationInfo, float], object]) -> Callable[..., None]:
    """An ``on_version_apply`` callback that hands ``report`` each step and the
    time since the previous one (or since the callback was made, just before
    the first): Alembic calls it after each step, in the step's transaction."""
    last = time.perf_counter()

    def on_version_apply(ctx: MigrationContext, step: MigrationInfo, heads: object, run_args: object) -> None:
        nonlocal last
        now = time.perf_counter()
        report(step, now - last)
        last = now

    return on_version_apply


def run_migrations(metadata: sa.MetaData, schema: str) -> None:
    """The body of every service's env.py: migrate ``schema``, whose tables
    ``metadata`` holds, keeping the version table in that schema."""
    config = context.config
    # What every mode but plain offline SQL configures alike.
    common: dict[str, Any] = {
        "target_metadata": metadata,
        "version_table_schema": schema,
        # The models live in the service's schema, not public: autogenerate
        # must look beyond the default schema to see them.
        "include_schemas": True,
        "process_revision_directives": timestamp_revision_ids,
    }
    if _needs_no_database(config):
        # Offline-style, into a buffer nobody reads: the revision hooks run
        # and nothing connects.
        context.configure(dialect_name="postgresql", as_sql=True, output_buffer=io.StringIO(), **common)
        with context.begin_transaction():
            context.run_migrations()
        return

    if context.is_offline_mode():
        context.configure(
            url=database_url(config),
            target_metadata=metadata,
            version_table_schema=schema,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    engine = sa.create_engine(database_url(config), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        # As the migration role, whoever connected (it, or an administrator):
        # it owns the schema and everything in it, and no runtime role does
        # (goshop_common.db.roles; its bootstrap makes the role).
        connection.execute(sa.text(f"SET ROLE {MIGRATION}"))
        # Before Alembic starts: its version table is created in this schema.
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.execute(sa.text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
        connection.execute(sa.text(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
        # Committed: the schema is there for good, and a session SET is kept
        # past the commit (a rolled-back transaction would undo it).
        connection.commit()
        report = config.attributes.get(ON_STEP)
        if report is not None:
            common["on_version_apply"] = [_timed(report)]
        context.configure(connection=connection, **common)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def create_index_concurrently(op: Op, name: str, schema: str, definition: str) -> None:
    """``CREATE INDEX CONCURRENTLY`` ``schema.name`` ``ON schema.<definition>``,
    for an index on a table that may already be large: writes go on while it
    is built (a plain CREATE INDEX blocks them for as long as the build takes).

    CONCURRENTLY cannot run in a transaction, so this commits what the
    revision did so far and runs in autocommit, without the statement timeout
    (a long build blocks nobody). A build that failed leaves an invalid index
    of that name behind: it is dropped first, so running the revision again
    repairs it."""
    with op.get_context().autocommit_block():
        op.execute("SET statement_timeout = 0")
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema}.{name}")
        op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {schema}.{definition}")
        op.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")


_SECTION = re.compile(r"^--\s*\+goose\s+(Up|Down)\s*$", re.IGNORECASE | re.MULTILINE)


def sql_sections(path: Path) -> dict[str, str]:
    """The ``-- +goose Up`` and ``-- +goose Down`` parts of a goose-style file."""
    text = path.read_text()
    # One capturing group: [before, marker, body, marker, body, ...]. What
    # precedes the first marker (the file's comments) belongs to neither.
    parts = _SECTION.split(text)
    sections = {"up": "", "down": ""}
    for marker, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[marker.lower()] = body.strip()
    return sections


def run_sql_file(revision_file: str, direction: str) -> None:
    """Run one direction of the ``.sql`` file that sits beside a revision."""
    from alembic import op

    sql = sql_sections(Path(revision_file).with_suffix(".sql"))[direction]
    # An empty section is nothing to run (a one-way migration's Down).
    if sql:
        op.execute(sql)
