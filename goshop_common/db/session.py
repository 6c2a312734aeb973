"""The database: one engine per process, and how goshop writes to it, one way
per context.

- An HTTP request: ``request.dbsession``, joined to the request's transaction
  (pyramid_tm + zope.sqlalchemy), which commits when the view returns and
  rolls back when it raises, before any answer leaves. Two writes run Core
  statements in a transaction of their own instead,
  ``own_transaction(request_bind(request))``, and never touch the session:
  the login throttle's reservation, which commits before the password is
  checked and outlives a refused login's rollback (goshop_users.throttle);
  and the order's creation, the hot write (docs/adr/0006).
- A worker's batch (consumers, outboxer, sweeper) and the maintenance
  worker's: Core statements in ``engine.begin()``, a transaction per batch.
  The hot ones are prepared (goshop_common.db.prepared, docs/adr/0003) and
  bind a batch's rows as arrays (goshop_common.db.arrays), so one statement
  serves every batch size; retention deletes in small batches
  (docs/adr/0005).

A test may hand its own session in through ``environ["goshop.dbsession"]``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from zope.sqlalchemy.datamanager import STATUS_CHANGED, join_transaction

from goshop_common.db import roles
from goshop_common.observability import tracing
from goshop_common.settings import DatabaseSettings

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.request import Request
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

# Stable constraint names, so migrations can name what they drop.
NAMING_CONVENTION = {
    # Not column_0_label: with a schema on the metadata it would put the schema
    # in the name (ix_users_sessions_user_id); the migrations say ix_<table>_<column>.
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SESSION_ENVIRON_KEY = "goshop.dbsession"


def sqlalchemy_url(url: str) -> str:
    """The URL with psycopg2 named: SQLAlchemy 2.1 maps a bare ``postgresql://``
    to psycopg 3, which goshop does not ship. URLs stay driver-free in settings
    so that psql, pg_dump and the seed's Docker setup read them too."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare) :]
    return url


def make_engine(
    settings: DatabaseSettings, server_settings: dict[str, str] | None = None, **overrides: Any
) -> sa.Engine:
    """The process's engine; ``overrides`` replace any option (the workers
    ask for a smaller pool). ``server_settings`` are PostgreSQL settings for
    every connection of the engine, on top of the statement timeout (the
    outboxer's planner choice, say)."""
    # How long either end of a connection waits on a peer whose kernel has
    # stopped acknowledging before it gives the connection up (see connect_args).
    dead_after = settings.db_connect_timeout
    server = {
        "statement_timeout": str(settings.db_statement_timeout_ms),
        # The server's side of connect_args' keepalives: a backend whose
        # client went away silently (a partition dropped the client's RST
        # too) ends within seconds, rolling back and releasing its row locks,
        # not after the server's two-hour keepalive default. An outboxer that
        # gave up its claim mid-partition left its rows locked so, and every
        # replica's claim (SKIP LOCKED) passed them over.
        "tcp_keepalives_idle": str(dead_after),
        "tcp_keepalives_interval": "1",
        "tcp_keepalives_count": str(dead_after),
        "tcp_user_timeout": str(dead_after * 1000),
        **(server_settings or {}),
    }
    options = {
        "pool_size": settings.db_pool_size,
        # Up to twice the pool under a burst; the extra connections close
        # once they are returned.
        "max_overflow": settings.db_pool_size,
        # A request waits at most this long for a connection, then fails.
        "pool_timeout": 5,
        # No ping on every checkout (a round trip per transaction): see
        # _ping_connections_that_sat_idle.
        "pool_pre_ping": False,
        # Set when each connection opens, so every statement of the process
        # has the timeout, whatever session or worker runs it.
        "connect_args": {
            "connect_timeout": settings.db_connect_timeout,
            # A server that stops answering without closing the connection
            # (its packets dropped by a partition, its host gone) fails the
            # statement that waits on it within seconds, not after TCP's
            # retransmissions (up to 15 minutes on Linux): data it has not
            # acknowledged for as long as a connect may take, or a keepalive
            # probe it leaves unanswered once the connection was idle that
            # long, closes the connection. A request then gets its 503 before
            # the gateway's upstream timeout makes it a 504, and a worker its
            # OperationalError before its consumer group gives it up.
            "keepalives": 1,
            "keepalives_idle": dead_after,
            "keepalives_interval": 1,
            "keepalives_count": dead_after,
            "tcp_user_timeout": dead_after * 1000,
            "options": " ".join(f"-c {name}={value}" for name, value in server.items()),
            # What pg_stat_activity shows for these connections.
            "application_name": "goshop",
        },
    }
    options.update(overrides)
    engine = sa.create_engine(sqlalchemy_url(settings.database_url), **options)
    if settings.production:
        roles.refuse_privileged_roles(engine)
    _ping_connections_that_sat_idle(engine)
    tracing.instrument_engine(engine)
    return engine


# A pooled connection back in use within this long was just working: no ping.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_connections_that_sat_idle(engine: sa.Engine) -> None:
    """Ping a connection on checkout only when it sat in the pool for longer
    than PING_AFTER_IDLE_SECONDS.

    A restarted database leaves dead connections in the pool, and a ping
    finds them before a request does. But ``pool_pre_ping`` pings every
    checkout: under load, one extra round trip per transaction for
    connections that answered a millisecond ago. A restart takes longer than
    the idle threshold, so the connections it killed are pinged (and
    replaced: a DisconnectionError makes the pool reconnect); a connection in
    use when the server goes away fails its statement, which is a 503 like
    any other request made while the database is down."""

    @sa.event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        if dbapi_connection is not None:
            record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checked_out(
        dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        # record.info is dropped with its DBAPI connection: a new one has no mark.
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError("pooled connection is dead") from exc


def _dbsession(request: Request) -> Session:
    session: Session | None = request.environ.get(SESSION_ENVIRON_KEY)
    # A test's own session is neither joined nor closed here: the test owns it.
    if session is None:
        session = request.registry.dbsession_factory()
        # "changed" from the start: zope.sqlalchemy otherwise rolls back a
        # transaction whose only writes were Core statements (an upsert, say)
        # and loses them without a word. Committing a read-only transaction
        # costs the same round-trip as rolling it back.
        # Joined now, not through register(): its seven event listeners per
        # session would only join it at its first statement and mark it
        # changed, which it already is (docs/adr/0006).
        join_transaction(session, STATUS_CHANGED, transaction_manager=request.tm)
        request.add_finished_callback(lambda _request: session.close())
    return session


def request_bind(request: Request) -> sa.Engine | sa.Connection:
    """Where work outside the request's session runs: the app's engine or,
    when a test handed its own session in, that session's connection (whose
    outer transaction the test rolls back)."""
    injected = request.environ.get(SESSION_ENVIRON_KEY)
    if injected is not None and isinstance(injected.bind, sa.Connection):
        return injected.bind
    engine: sa.Engine = request.registry.dbengine
    return engine


@contextlib.contextmanager
def own_transaction(bind: sa.Engine | sa.Connection) -> Iterator[sa.Connection]:
    """A transaction of the caller's own: committed when the block ends,
    rolled back when it raises. On an Engine, a pooled connection's
    transaction; on a Connection (a test's, from request_bind), a savepoint,
    so that the test's rollback still undoes it."""
    if isinstance(bind, sa.Connection):
        with bind.begin_nested():
            yield bind
        return
    with bind.begin() as connection:
        yield connection


# Views that never touch the database: pyramid_tm begins no transaction
# around them, as they have nothing to commit.
NO_TRANSACTION_PATHS = frozenset({"/live"})


def needs_transaction(request: Request) -> bool:
    """pyramid_tm's ``tm.activate_hook``: every request but NO_TRANSACTION_PATHS."""
    return request.environ.get("PATH_INFO") not in NO_TRANSACTION_PATHS


def includeme(config: Configurator) -> None:
    settings: DatabaseSettings = config.registry.goshop_settings
    engine = make_engine(settings)
    config.registry.dbengine = engine
    config.registry.dbsession_factory = sessionmaker(bind=engine, expire_on_commit=False)
    # pyramid_tm's recommended hook: a new transaction manager in explicit
    # mode for each request (request.tm), not the thread-local default.
    config.add_settings({"tm.manager_hook": "pyramid_tm.explicit_manager", "tm.activate_hook": needs_transaction})
    config.include("pyramid_tm")
    config.add_request_method(_dbsession, "dbsession", reify=True)
