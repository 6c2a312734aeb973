"""Each service's retention rules against the migrated schema: a pass of the
maintenance worker deletes exactly the rows past their horizon, and nothing
that is still in use — the row just inside its horizon, a pending outbox row
however old, an active session. The worker's clock is moved, never waited for."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from goshop_common.messaging.inbox import first_deliveries
from goshop_maintenance.__main__ import build
from goshop_maintenance.rules import every_rule
from goshop_orders.idempotency import IdempotencyKeys, Replay
from goshop_orders.models import INBOX as ORDERS_INBOX
from goshop_users.throttle import LoginThrottle, Throttled, pair_key
from tests.support import with_settings

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
DAY = dt.timedelta(days=1)


@pytest.fixture
def maintenance_settings(settings):
    # The defaults, as the maintenance process loads them.
    return with_settings(
        settings,
        idempotency_key_ttl=24 * 3600,
        login_failure_window=900,
        retention_outbox=7 * 24 * 3600,
        retention_inbox=30 * 24 * 3600,
        retention_sessions=30 * 24 * 3600,
        broker_retention=14 * 24 * 3600,
        retention_batch_size=1000,
        retention_interval=300,
    )


@pytest.fixture
def run_pass(clean_db, maintenance_settings):
    """``run_pass(at)``: one pass of the maintenance worker with its clock at ``at``."""

    def run(at: dt.datetime = NOW) -> None:
        assert build(maintenance_settings, clean_db, clock=lambda: at).pass_once()

    return run


def execute(engine, sql: str, **params):
    with engine.begin() as connection:
        return connection.execute(sa.text(sql), params)


def column(engine, sql: str) -> set:
    with engine.connect() as connection:
        return set(connection.execute(sa.text(sql)).scalars())


def add_outbox_row(engine, schema: str, name: str, created_at, published_at=None, attempts=0, error=None) -> None:
    execute(
        engine,
        f"INSERT INTO {schema}.outbox (event_id, topic, key, event_type, payload, created_at, published_at,"
        " attempts, last_error) VALUES (:event_id, 't', :key, 'order.created', '{}', :created_at, :published_at,"
        " :attempts, :error)",
        event_id=uuid.uuid4(),
        key=name,
        created_at=created_at,
        published_at=published_at,
        attempts=attempts,
        error=error,
    )


@pytest.mark.parametrize("schema", ["orders", "payments"])
def test_published_outbox_rows_past_the_horizon_go_and_pending_ones_stay_however_old(clean_db, run_pass, schema):
    keep = 7 * DAY
    add_outbox_row(clean_db, schema, "published-past", NOW - keep - DAY, published_at=NOW - keep - SECOND)
    add_outbox_row(clean_db, schema, "published-at-horizon", NOW - keep - DAY, published_at=NOW - keep)
    add_outbox_row(clean_db, schema, "published-just-inside", NOW - keep - DAY, published_at=NOW - keep + SECOND)
    add_outbox_row(clean_db, schema, "pending-for-months", NOW - 90 * DAY)
    add_outbox_row(clean_db, schema, "failing-for-months", NOW - 90 * DAY, attempts=40, error="broker down")

    run_pass()

    assert column(clean_db, f"SELECT key FROM {schema}.outbox") == {
        "published-just-inside",
        "pending-for-months",
        "failing-for-months",
    }


def add_inbox_row(engine, schema: str, received_at) -> uuid.UUID:
    event_id = uuid.uuid4()
    execute(
        engine,
        f'INSERT INTO {schema}.inbox (event_id, event_type, topic, partition, "offset", received_at)'
        " VALUES (:event_id, 'order.created', 't', 0, 1, :received_at)",
        event_id=event_id,
        received_at=received_at,
    )
    return event_id


@pytest.mark.parametrize("schema", ["orders", "payments"])
def test_inbox_rows_past_the_dedupe_horizon_go_and_those_inside_it_stay(clean_db, run_pass, schema):
    horizon = 30 * DAY
    add_inbox_row(clean_db, schema, NOW - horizon - SECOND)
    add_inbox_row(clean_db, schema, NOW - horizon)
    inside = add_inbox_row(clean_db, schema, NOW - horizon + SECOND)
    recent = add_inbox_row(clean_db, schema, NOW - SECOND)

    run_pass()

    assert column(clean_db, f"SELECT event_id FROM {schema}.inbox") == {inside, recent}


def deliver(engine, event_id: uuid.UUID) -> bool:
    """The consumer's check, in a transaction of its own: True for a first delivery."""
    with engine.begin() as connection:
        delivered = SimpleNamespace(
            event_id=event_id, type="payment.confirmed", topic="payments.events", partition=2, offset=7
        )
        return bool(first_deliveries(connection, ORDERS_INBOX, [delivered]))


def test_a_duplicate_inside_the_inbox_horizon_is_still_caught_after_a_pass(clean_db, run_pass):
    event_id = uuid.uuid4()
    assert deliver(clean_db, event_id)
    received_at = column(clean_db, "SELECT received_at FROM orders.inbox").pop()

    run_pass(received_at + 30 * DAY - SECOND)

    assert not deliver(clean_db, event_id), "a redelivery inside the horizon must be a duplicate"

    # Past the horizon the row is gone, and only then would the event count
    # as new: the horizon, nothing else, is what keeps it.
    run_pass(received_at + 30 * DAY + SECOND)
    assert column(clean_db, "SELECT event_id FROM orders.inbox") == set()


def add_idempotency_key(engine, key: str, created_at) -> uuid.UUID:
    user_id = uuid.uuid4()
    execute(
        engine,
        "INSERT INTO orders.idempotency_keys (user_id, key, request_hash, response_status, response_body,"
        " created_at) VALUES (:user_id, :key, 'h', 201, '{\"id\": \"o\"}', :created_at)",
        user_id=user_id,
        key=key,
        created_at=created_at,
    )
    return user_id


def test_idempotency_keys_go_after_their_ttl_and_one_inside_it_still_replays(clean_db, run_pass):
    add_idempotency_key(clean_db, "past", NOW - DAY - SECOND)
    add_idempotency_key(clean_db, "at-ttl", NOW - DAY)
    owner = add_idempotency_key(clean_db, "just-inside", NOW - DAY + SECOND)

    run_pass()

    assert column(clean_db, "SELECT key FROM orders.idempotency_keys") == {"just-inside"}
    with sa.orm.Session(clean_db) as db:
        keys = IdempotencyKeys(db, clock=lambda: NOW, ttl_seconds=24 * 3600)
        assert keys.begin(owner, "just-inside", "h") == Replay(201, {"id": "o"})


def add_login_failures(engine, key: str, failures: int, window_started_at) -> None:
    execute(
        engine,
        "INSERT INTO users.login_failures (key, failures, window_started_at) VALUES (:key, :failures, :started)",
        key=key,
        failures=failures,
        started=window_started_at,
    )


def test_login_failure_counters_go_once_their_window_is_over_and_an_open_window_still_throttles(clean_db, run_pass):
    window = dt.timedelta(seconds=900)
    throttle = LoginThrottle(clean_db, 5, 50, 100, 900, clock=lambda: NOW)
    email, client = "victim@example.com", "192.0.2.7"
    add_login_failures(clean_db, "client:198.51.100.1", 50, NOW - window - SECOND)
    add_login_failures(clean_db, "client:198.51.100.2", 50, NOW - window)
    # The pair key of (email, client), full and still in its window.
    pair = pair_key(email, client)
    add_login_failures(clean_db, pair, 5, NOW - window + SECOND)

    run_pass()

    assert column(clean_db, "SELECT key FROM users.login_failures") == {pair}
    with pytest.raises(Throttled):
        throttle.reserve(email, client)


def add_session(engine, user_id, created_at, expires_at, revoked_at=None) -> uuid.UUID:
    session_id = uuid.uuid4()
    execute(
        engine,
        "INSERT INTO users.sessions (id, user_id, current_jti, created_at, expires_at, revoked_at)"
        " VALUES (:id, :user_id, :jti, :created_at, :expires_at, :revoked_at)",
        id=session_id,
        user_id=user_id,
        jti=uuid.uuid4(),
        created_at=created_at,
        expires_at=expires_at,
        revoked_at=revoked_at,
    )
    return session_id


def test_sessions_ended_longer_ago_than_the_horizon_go_and_active_ones_stay(clean_db, run_pass):
    keep = 30 * DAY
    user_id = uuid.uuid4()
    execute(
        clean_db, "INSERT INTO users.users (id, email, password_hash) VALUES (:id, 'a@example.com', 'x')", id=user_id
    )
    old = NOW - 200 * DAY
    gone = {
        add_session(clean_db, user_id, old, expires_at=NOW - keep - SECOND),
        add_session(clean_db, user_id, old, expires_at=NOW - keep),
        # Revoked long ago, though it would have run for years yet.
        add_session(clean_db, user_id, old, expires_at=NOW + 365 * DAY, revoked_at=NOW - keep - SECOND),
    }
    kept = {
        add_session(clean_db, user_id, old, expires_at=NOW - keep + SECOND),
        add_session(clean_db, user_id, old, expires_at=NOW + DAY, revoked_at=NOW - keep + SECOND),
        # Active: opened long ago, refreshed since.
        add_session(clean_db, user_id, old, expires_at=NOW + DAY),
    }

    run_pass()

    remaining = column(clean_db, "SELECT id FROM users.sessions")
    assert remaining == kept
    assert not remaining & gone


def test_a_pass_with_nothing_expired_deletes_nothing(clean_db, run_pass):
    add_outbox_row(clean_db, "orders", "published-now", NOW, published_at=NOW)
    add_inbox_row(clean_db, "payments", NOW)
    add_idempotency_key(clean_db, "fresh", NOW)
    add_login_failures(clean_db, "client:192.0.2.1", 1, NOW)
    before = {
        table: column(clean_db, f"SELECT count(*) FROM {table}").pop()
        for table in ("orders.outbox", "payments.inbox", "orders.idempotency_keys", "users.login_failures")
    }

    run_pass()

    after = {table: column(clean_db, f"SELECT count(*) FROM {table}").pop() for table in before}
    assert after == before == dict.fromkeys(before, 1)


def test_every_rule_finds_its_rows_through_an_index(engine, maintenance_settings):
    """With sequential scans priced out, each batch's search is an index scan:
    one exists that answers the predicate (on an empty table the planner
    would pick a sequential scan anyway). bench/bench_retention.py measures
    the plan on a table of 200,000 rows."""
    plans = {}
    with engine.connect() as connection:
        connection.execute(sa.text("SET enable_seqscan = off"))
        for rule in every_rule(maintenance_settings):
            query = rule.batch(NOW, 1000).compile(engine, compile_kwargs={"literal_binds": True})
            plans[rule.name] = "\n".join(connection.execute(sa.text(f"EXPLAIN {query}")).scalars())
        connection.rollback()
    assert set(plans) == {
        "users.login_failures",
        "users.sessions",
        "orders.idempotency_keys",
        "orders.outbox",
        "orders.inbox",
        "payments.outbox",
        "payments.inbox",
    }
    for name, plan in plans.items():
        assert "Seq Scan" not in plan, f"{name}:\n{plan}"
        index = {
            "users.login_failures": ["ix_login_failures_window_started_at"],
            "users.sessions": ["ix_sessions_expires_at", "ix_sessions_revoked_at"],
            "orders.idempotency_keys": ["ix_idempotency_keys_created_at"],
        }.get(name, ["ix_outbox_published_at"] if name.endswith("outbox") else ["ix_inbox_received_at"])
        for wanted in index:
            assert wanted in plan, f"{name}:\n{plan}"
        # And the rows found are deleted by their address, not by a join
        # with the whole table (goshop_common.db.retention.Rule.batch).
        assert "Tid Scan" in plan, f"{name}:\n{plan}"
