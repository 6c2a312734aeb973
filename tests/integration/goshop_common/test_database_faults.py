"""What counts as "the database is unavailable": real errors from a real
server, told apart by type and SQLSTATE."""

import pytest
import sqlalchemy as sa

from goshop_common.db.session import make_engine
from goshop_common.web.errors import database_unavailable
from goshop_devtools.postgres import free_port
from tests.support import with_settings


def _run(engine, statements):
    with engine.connect() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))


def _error_of(engine, *statements):
    with pytest.raises(sa.exc.DBAPIError) as caught:
        _run(engine, statements)
    return caught.value


def test_a_refused_connection_is_unavailable(settings):
    dead = with_settings(settings, database_url=f"postgresql://goshop:x@127.0.0.1:{free_port()}/goshop")
    engine = make_engine(dead)
    try:
        with pytest.raises(sa.exc.OperationalError) as caught:
            engine.connect()
    finally:
        engine.dispose()
    assert caught.value.orig.pgcode is None
    assert database_unavailable(caught.value)


def test_a_statement_timeout_is_unavailable(engine):
    error = _error_of(engine, "SET statement_timeout = 1", "SELECT pg_sleep(1)")
    assert error.orig.pgcode == "57014"
    assert database_unavailable(error)


def test_a_connection_the_server_terminates_is_unavailable(engine):
    error = _error_of(engine, "SELECT pg_terminate_backend(pg_backend_pid())")
    assert database_unavailable(error)


@pytest.mark.parametrize(
    "statements",
    [
        ("SELECT 'not a uuid'::uuid",),
        ("SELECT 1/0",),
        ("SELECT * FROM no_such_table",),
        ("CREATE TEMP TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1), (1)"),
    ],
    ids=["data", "division", "programming", "integrity"],
)
def test_an_error_in_the_request_or_the_code_is_not_unavailable(engine, statements):
    assert not database_unavailable(_error_of(engine, *statements))


def test_a_python_error_is_not_unavailable():
    assert not database_unavailable(ValueError("nothing to do with the database"))
