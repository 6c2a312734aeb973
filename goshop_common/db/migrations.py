"""What every service's Alembic ``env.py`` does, written once.

Each service migrates its own schema and keeps its own version table there, so
services migrate independently. The database URL comes from, in order: the
caller (``config.attributes["database_url"]``), ``GOSHOP_DATABASE_URL``, the
ini's ``sqlalchemy.url``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import sqlalchemy as sa
from alembic import context

from goshop_common.db.session import sqlalchemy_url

# Fail fast rather than queue behind a long transaction holding a lock that a
# DDL statement needs: a stuck migration blocks every query behind it.
LOCK_TIMEOUT = "5s"
STATEMENT_TIMEOUT = "120s"


def database_url(config) -> str:
    return sqlalchemy_url(
        config.attributes.get("database_url")
        or os.environ.get("GOSHOP_DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )


def run_migrations(metadata: sa.MetaData, schema: str) -> None:
    config = context.config
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
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.execute(sa.text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
        connection.execute(sa.text(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


_SECTION = re.compile(r"^--\s*\+goose\s+(Up|Down)\s*$", re.IGNORECASE | re.MULTILINE)


def sql_sections(path: Path) -> dict[str, str]:
    """The ``-- +goose Up`` and ``-- +goose Down`` parts of a goose-style file."""
    text = path.read_text()
    parts = _SECTION.split(text)
    sections = {"up": "", "down": ""}
    for marker, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[marker.lower()] = body.strip()
    return sections


def run_sql_file(revision_file: str, direction: str) -> None:
    """Run one direction of the ``.sql`` file that sits beside a revision."""
    from alembic import op

    sql = sql_sections(Path(revision_file).with_suffix(".sql"))[direction]
    if sql:
        op.execute(sql)
