"""The batch deletes behind every retention rule (goshop_common.db.retention),
on a real table of the migrated schema: batches are short transactions of
their own, two workers share the work without waiting on each other, and a
lock held elsewhere is skipped or given up on, never queued behind."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa

from goshop_common.db.retention import delete_batch, delete_expired
from goshop_common.messaging.inbox import retention_rule
from goshop_maintenance.worker import Maintenance
from goshop_orders.models import INBOX
from goshop_payments.models import INBOX as PAYMENTS_INBOX

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
HORIZON = dt.timedelta(days=30)
RULE = retention_rule(INBOX, HORIZON)
EXPIRED = NOW - HORIZON - dt.timedelta(days=1)


def add_inbox_rows(engine, count: int, received_at=EXPIRED, table: str = "orders.inbox") -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                f'INSERT INTO {table} (event_id, event_type, topic, partition, "offset", received_at)'
                " SELECT gen_random_uuid(), 'payment.confirmed', 'payments.events', 0, n, :received_at"
                " FROM generate_series(1, :count) AS n"
            ),
            {"received_at": received_at, "count": count},
        )


def count(engine, table: str = "orders.inbox") -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


@contextlib.contextmanager
def statements_and_commits(engine):
    """Counts the DELETE statements and the commits ``engine`` runs in the block."""
    seen = {"deletes": 0, "commits": 0}

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE"):
            seen["deletes"] += 1

    def on_commit(conn):
        seen["commits"] += 1

    sa.event.listen(engine, "before_cursor_execute", on_execute)
    sa.event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", on_execute)
        sa.event.remove(engine, "commit", on_commit)


def test_more_rows_than_a_batch_are_deleted_in_several_transactions_of_one_batch_each(clean_db):
    add_inbox_rows(clean_db, 250)
    add_inbox_rows(clean_db, 3, received_at=NOW)
    batches = []

    with statements_and_commits(clean_db) as seen:
        deleted = delete_expired(clean_db, RULE, NOW, 100, on_batch=batches.append)

    assert deleted == 250
    assert batches == [100, 100, 50]
    assert seen == {"deletes": 3, "commits": 3}
    assert count(clean_db) == 3


def test_a_table_with_an_exact_multiple_of_the_batch_ends_with_an_empty_batch(clean_db):
    add_inbox_rows(clean_db, 200)
    batches = []

    assert delete_expired(clean_db, RULE, NOW, 100, on_batch=batches.append) == 200
    assert batches == [100, 100, 0]


def test_two_workers_at_once_delete_each_row_once_without_errors(clean_db):
    add_inbox_rows(clean_db, 3000)
    deleted: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        try:
            start.wait(timeout=10)
            delete_expired(clean_db, RULE, NOW, 50, on_batch=deleted[name].append)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(name,)) for name in deleted]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(deleted["a"]) + sum(deleted["b"]) == 3000
    assert count(clean_db) == 0


def test_a_second_worker_takes_other_rows_than_a_batch_in_flight_and_does_not_wait_for_it(clean_db):
    add_inbox_rows(clean_db, 300)
    with clean_db.connect() as first:
        # The first worker's batch, deleted and not yet committed.
        in_flight = first.execute(RULE.batch(NOW, 50)).rowcount
        started = time.monotonic()
        second = delete_expired(clean_db, RULE, NOW, 50)
        waited = time.monotonic() - started
        first.commit()

    assert (in_flight, second) == (50, 250)
    assert waited < 1, "the second worker waited for the first one's rows"
    assert count(clean_db) == 0


def test_a_row_someone_holds_locked_is_left_for_the_next_pass(clean_db):
    add_inbox_rows(clean_db, 10)
    with clean_db.connect() as holder:
        locked = holder.execute(
            sa.text('SELECT event_id FROM orders.inbox ORDER BY "offset" LIMIT 1 FOR UPDATE')
        ).scalar_one()
        started = time.monotonic()
        assert delete_expired(clean_db, RULE, NOW, 100) == 9
        assert time.monotonic() - started < 1, "the locked row was waited for"
        holder.rollback()

    with clean_db.connect() as connection:
        assert connection.execute(sa.text("SELECT event_id FROM orders.inbox")).scalars().all() == [locked]
    assert delete_expired(clean_db, RULE, NOW, 100) == 1


def test_a_batch_gives_up_on_a_table_lock_instead_of_queueing_behind_it(clean_db):
    add_inbox_rows(clean_db, 10)
    with clean_db.connect() as migration:
        # What a migration's ALTER TABLE holds; every query on the table would
        # queue behind a DELETE waiting for it.
        migration.execute(sa.text("LOCK TABLE orders.inbox IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError) as failure:
            delete_batch(clean_db, RULE, NOW, 100)
        waited = time.monotonic() - started
        migration.rollback()

    assert failure.value.orig.pgcode == "55P03"  # lock_not_available
    assert 0.9 < waited < 5
    assert count(clean_db) == 10


def test_a_pass_goes_on_to_the_other_tables_when_one_is_locked_and_retries_it_next_time(clean_db):
    add_inbox_rows(clean_db, 5)
    add_inbox_rows(clean_db, 5, table="payments.inbox")
    maintenance = Maintenance(
        clean_db, [RULE, retention_rule(PAYMENTS_INBOX, HORIZON)], batch_size=100, interval=60, clock=lambda: NOW
    )
    with clean_db.connect() as migration:
        migration.execute(sa.text("LOCK TABLE orders.inbox IN ACCESS EXCLUSIVE MODE"))
        assert maintenance.pass_once() is False
        migration.rollback()
    assert (count(clean_db), count(clean_db, "payments.inbox")) == (5, 0)

    assert maintenance.pass_once() is True
    assert count(clean_db) == 0
