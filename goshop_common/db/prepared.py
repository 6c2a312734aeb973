"""Hot statements that PostgreSQL parses and plans once per connection.

psycopg2 sends every statement as text: PostgreSQL parses, analyses and
plans it each time, and SQLAlchemy's execution of a compiled statement adds
its own work in the service. The hot statements (the order's INSERT with its
event, the consumers' and the outboxer's batches) pay both on every call
(docs/adr/0003). ``execute(connection, statement, params)`` runs a Core
statement as ``EXECUTE goshop_<digest>(...)`` instead, after a ``PREPARE``
the first time a connection meets it: the statement is compiled once per
process, its values go through the same SQLAlchemy bind processors (JSONB,
arrays), and the result reads as ``connection.execute``'s does.

What it assumes: the connection is PostgreSQL's own (a transaction-pooling
PgBouncer would hand the ``EXECUTE`` to a server connection that never saw
the ``PREPARE``), and no migration changes the result columns of a running
process's statements (PostgreSQL re-plans after DDL, but refuses a plan whose
result type changed); goshop migrates before it deploys. A ``PREPARE`` is
not undone by a rollback, so a connection keeps its statements for its life;
the pool drops the record of them with the connection.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# Where a connection keeps the names it has prepared (Connection.info lives
# as long as the DBAPI connection).
_INFO_KEY = "goshop.prepared"


class _Compiled:
    """One statement for one dialect: PREPARE's text, EXECUTE's, and how
    each value is bound."""

    def __init__(self, statement: sa.Executable, dialect: sa.Dialect):
        if not isinstance(statement, ClauseElement):
            raise TypeError(f"not a statement SQLAlchemy compiles: {statement!r}")
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler):  # a DDL statement's DDLCompiler has no binds
            raise TypeError(f"not a statement with bound values: {statement!r}")
        if any(bind.expanding for bind in compiled.binds.values()):
            raise ValueError("an expanding IN cannot be prepared: bind an array (= ANY(:values)) instead")
        order: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in order:
                order.append(name)
            return f"${order.index(name) + 1}"

        text = _PLACEHOLDER.sub(number, compiled.string)
        if "%" in text:
            # A literal percent sign, doubled for psycopg2: not worth the
            # ambiguity of unescaping it.
            raise ValueError("a statement with a literal % cannot be prepared")
        types = [dialect.type_compiler_instance.process(compiled.binds[name].type) for name in order]
        self.name = "goshop_" + hashlib.sha256(text.encode()).hexdigest()[:16]
        self.prepare = f"PREPARE {self.name} ({', '.join(types)}) AS {text}"
        # Each value cast to its parameter's type: psycopg2 writes a list of
        # strings as a text[], which PostgreSQL will not coerce to jsonb[]
        # unless told to.
        arguments = ", ".join(f"%({name})s::{type_}" for name, type_ in zip(order, types, strict=True))
        self.execute = f"EXECUTE {self.name} ({arguments})"
        self.compiled = compiled
        self.order = order
        processors: dict[str, Callable[[Any], Any]] = {}
        for name in order:
            processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        self.processors = processors

    def values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        # construct_params adds the statement's own values (a literal 'new'
        # in a WHERE is a bound parameter too).
        values = self.compiled.construct_params(params)
        for name, processor in self.processors.items():
            values[name] = processor(values[name])
        return {name: values[name] for name in self.order}


_compiled: dict[tuple[int, str], tuple[sa.Executable, _Compiled]] = {}
_lock = threading.Lock()


def _compile(statement: sa.Executable, dialect: sa.Dialect) -> _Compiled:
    key = (id(statement), dialect.name)
    entry = _compiled.get(key)
    if entry is None:
        with _lock:
            entry = _compiled.get(key)
            if entry is None:
                # The statement is kept with its compiled form, so its id is never reused.
                entry = _compiled[key] = (statement, _Compiled(statement, dialect))
    return entry[1]


def execute(connection: sa.Connection | Session, statement: sa.Executable, params: Mapping[str, Any]) -> sa.Result[Any]:
    """``connection.execute(statement, params)``, prepared on ``connection``
    the first time. ``statement`` is built once (a module's constant): each
    distinct object is a statement of its own. A Session (a test's, or an
    ORM caller's) executes it unprepared, as SQLAlchemy does."""
    if not isinstance(connection, sa.Connection):
        return connection.execute(statement, params)
    compiled = _compile(statement, connection.dialect)
    prepared = connection.info.setdefault(_INFO_KEY, set())
    if compiled.name not in prepared:
        connection.exec_driver_sql(compiled.prepare)
        prepared.add(compiled.name)
    return connection.exec_driver_sql(compiled.execute, compiled.values(params))


def statement_of(sql: str) -> str | None:
    """The SQL that text sent by a connection runs, for whoever reads what
    was sent (a test counting statements, a person reading a trace's
    ``EXECUTE goshop_…``): the statement behind one of these EXECUTEs, None
    for one of these PREPAREs (it runs nothing), any other text as it is."""
    if sql.startswith("PREPARE goshop_"):
        return None
    if sql.startswith("EXECUTE goshop_"):
        name = sql.split(" ", 2)[1]
        for _statement, compiled in list(_compiled.values()):
            if compiled.name == name:
                text: str = compiled.compiled.string
                return text
    return sql
