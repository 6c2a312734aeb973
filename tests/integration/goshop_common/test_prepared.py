"""Prepared statements (goshop_common.db.prepared) against the real database:
prepared once per connection, answering as connection.execute does, and
prepared afresh on a connection that replaced a dead one."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from goshop_common.db import prepared
from goshop_orders.models import OUTBOX

# Built once, as the services' statements are: the object is the statement.
INSERT = (
    OUTBOX.insert()
    .values(
        event_id=sa.bindparam("event_id"),
        topic=sa.bindparam("topic"),
        key=sa.bindparam("key"),
        event_type="test.event",
        payload=sa.bindparam("payload"),
    )
    .returning(OUTBOX.c.event_id, OUTBOX.c.payload, OUTBOX.c.created_at)
)
PENDING_FOR = sa.select(OUTBOX.c.event_id, OUTBOX.c.payload).where(
    OUTBOX.c.key == sa.bindparam("key"), OUTBOX.c.published_at.is_(None)
)


def row(key: str) -> dict:
    return {"event_id": uuid.uuid4(), "topic": "t", "key": key, "payload": {"n": 1, "text": "100% \u00fcber"}}


def ours(connection) -> int:
    return connection.execute(
        sa.text("SELECT count(*) FROM pg_prepared_statements WHERE starts_with(name, 'goshop_')")
    ).scalar_one()


def test_a_statement_is_prepared_once_per_connection_and_answers_as_execute_does(clean_db):
    with clean_db.connect() as connection:
        before = ours(connection)
        first, second = row("k-1"), row("k-1")
        inserted = [prepared.execute(connection, INSERT, values).one() for values in (first, second)]
        assert ours(connection) == before + 1
        assert [(r.event_id, r.payload) for r in inserted] == [(v["event_id"], v["payload"]) for v in (first, second)]
        assert inserted[0].created_at.tzinfo is not None
        read = prepared.execute(connection, PENDING_FOR, {"key": "k-1"}).all()
        assert read == connection.execute(PENDING_FOR, {"key": "k-1"}).all()
        assert ours(connection) == before + 2
        connection.rollback()


def test_a_rollback_leaves_the_connection_its_prepared_statement(clean_db):
    with clean_db.connect() as connection:
        prepared.execute(connection, INSERT, row("k-2"))
        connection.rollback()
        # The insert is undone, the PREPARE is not: the connection still runs it.
        assert prepared.execute(connection, PENDING_FOR, {"key": "k-2"}).all() == []
        prepared.execute(connection, INSERT, row("k-2"))
        assert len(prepared.execute(connection, PENDING_FOR, {"key": "k-2"}).all()) == 1
        connection.rollback()


@pytest.fixture
def one_connection(clean_db, settings):
    """An engine whose pool holds one connection: the one that replaces an
    invalidated connection is new, not another the session's engine pooled
    (which may have prepared the statement already)."""
    from goshop_common.db.session import make_engine

    engine = make_engine(settings, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def test_a_connection_that_replaced_a_dead_one_prepares_again(one_connection):
    with one_connection.connect() as connection:
        prepared.execute(connection, PENDING_FOR, {"key": "k-3"}).all()
        connection.invalidate()  # as the pool does when the server went away
        connection.rollback()
        assert ours(connection) == 0
        assert prepared.execute(connection, PENDING_FOR, {"key": "k-3"}).all() == []
        assert ours(connection) == 1


def test_what_an_execute_runs_reads_as_the_statement_behind_it(one_connection):
    sent: list[str] = []

    def seen(_conn, _cursor, sql, *_):
        sent.append(sql)

    with one_connection.connect() as connection:
        connection.invalidate()  # a fresh connection, which has prepared nothing yet
        connection.rollback()
        sa.event.listen(one_connection, "before_cursor_execute", seen)
        try:
            prepared.execute(connection, PENDING_FOR, {"key": "k-4"}).all()
        finally:
            sa.event.remove(one_connection, "before_cursor_execute", seen)
        connection.rollback()
    assert [sql.split(" ", 1)[0] for sql in sent] == ["PREPARE", "EXECUTE"]
    assert prepared.statement_of(sent[0]) is None
    assert prepared.statement_of(sent[1]) == str(PENDING_FOR.compile(dialect=one_connection.dialect))
    assert prepared.statement_of("SELECT 1") == "SELECT 1"


def test_a_session_and_an_expanding_in_are_left_to_sqlalchemy(dbsession):
    assert prepared.execute(dbsession, PENDING_FOR, {"key": "k-5"}).all() == []
    expanding = sa.select(OUTBOX.c.id).where(OUTBOX.c.key.in_(sa.bindparam("keys", expanding=True)))
    with pytest.raises(ValueError, match="expanding IN"):
        prepared.execute(dbsession.connection(), expanding, {"keys": ["a"]})
