"""The maintenance loop around the rules: what it says and does when the
database goes away and comes back, and when it is asked to stop."""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from goshop_common.messaging.inbox import retention_rule
from goshop_devtools.postgres import free_port
from goshop_maintenance.worker import Maintenance
from goshop_orders.models import INBOX
from tests.integration.goshop_common.test_retention import EXPIRED, NOW, add_inbox_rows, count

RULE = retention_rule(INBOX, dt.timedelta(days=30))


def worker(engine: sa.Engine) -> Maintenance:
    return Maintenance(engine, [RULE], batch_size=100, interval=60, clock=lambda: NOW)


def test_a_lost_database_is_reported_once_and_work_resumes_when_it_is_back(clean_db, caplog):
    add_inbox_rows(clean_db, 5, received_at=EXPIRED)
    nowhere = sa.create_engine(
        f"postgresql+psycopg2://goshop:goshop@127.0.0.1:{free_port()}/goshop", poolclass=sa.pool.NullPool
    )
    maintenance = worker(nowhere)

    with caplog.at_level(logging.INFO, logger="goshop.maintenance"):
        assert maintenance.pass_once() is False
        assert maintenance.pass_once() is False
        # The same worker, its database reachable again.
        maintenance.engine = clean_db
        assert maintenance.pass_once() is True

    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("database unavailable; the pass stops here") == 1
    assert "database is back" in messages
    assert not any(record.exc_info for record in caplog.records), "no traceback for a missing database"
    assert count(clean_db) == 0


def test_a_worker_asked_to_stop_deletes_nothing_more(clean_db):
    add_inbox_rows(clean_db, 5, received_at=EXPIRED)
    maintenance = worker(clean_db)

    maintenance.stop()

    assert maintenance.pass_once() is False
    maintenance.run()  # returns at once
    assert count(clean_db) == 5
