"""Pooled connections are pinged when they sat idle, not on every checkout,
and a dead one is replaced before anyone uses it."""

import pytest
import sqlalchemy as sa

from goshop_common.db import session as db_session
from goshop_common.db.session import make_engine


@pytest.fixture
def pings(settings, monkeypatch):
    """A one-connection engine whose real pings are counted."""
    engine = make_engine(settings, pool_size=1, max_overflow=0)
    count = []
    real_ping = engine.dialect.do_ping

    def counted(dbapi_connection):
        count.append(1)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    yield engine, count
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_back_in_use_at_once_is_not_pinged(pings):
    engine, count = pings
    pids = {backend_pid(engine) for _ in range(20)}
    assert len(pids) == 1  # the same pooled connection each time
    assert count == []


def test_a_connection_that_sat_idle_is_pinged_on_checkout(pings, monkeypatch):
    engine, count = pings
    backend_pid(engine)
    monkeypatch.setattr(db_session, "PING_AFTER_IDLE_SECONDS", -1.0)
    backend_pid(engine)
    assert count == [1]


def test_an_idle_connection_the_server_killed_is_replaced_before_use(pings, engine, monkeypatch):
    pooled, count = pings
    victim = backend_pid(pooled)
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
    monkeypatch.setattr(db_session, "PING_AFTER_IDLE_SECONDS", -1.0)
    assert backend_pid(pooled) != victim  # no error: the ping found it dead
    assert count == [1]
