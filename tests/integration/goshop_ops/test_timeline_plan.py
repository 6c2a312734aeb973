"""The ops timeline finds an order's events by the outbox's key index.

Retention keeps a week of the shop's events in each outbox (at 10 M orders
a year, about 190,000 rows a table); an order has one to three of them. A
timeline that scanned the outbox for its order's key cost PostgreSQL ten
times the CPU at 1 M orders than at 10 k (bench/bench_scale.py). With
statistics that know the table holds many keys, the lookup is an index
scan of ix_outbox_key, whatever the number of rows."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from goshop_ops.timeline import outbox_rows_of
from goshop_orders.read_contract import ORDERS_OUTBOX
from goshop_payments.read_contract import PAYMENTS_OUTBOX
from tests.support import plan_nodes

PUBLISHED = 3000


@pytest.fixture
def published_events(db_connection):
    """PUBLISHED published rows in each outbox, one order's key each, and
    their statistics (rolled back with the test's transaction)."""
    for table in ("orders.outbox", "payments.outbox"):
        db_connection.exec_driver_sql(
            f"INSERT INTO {table} (event_id, topic, key, event_type, payload, published_at) "
            "SELECT gen_random_uuid(), 'orders.events', gen_random_uuid()::text, 'order.created', "
            "jsonb_build_object('pad', repeat('x', 300)), now() FROM generate_series(1, %(n)s)",
            {"n": PUBLISHED},
        )
        db_connection.exec_driver_sql(f"ANALYZE {table}")
    return db_connection


@pytest.mark.parametrize("outbox", [ORDERS_OUTBOX, PAYMENTS_OUTBOX], ids=lambda table: table.schema)
def test_an_orders_timeline_reads_its_events_by_the_key_index_not_the_whole_outbox(published_events, outbox):
    [[key]] = published_events.execute(sa.select(outbox.c.key).limit(1)).all()
    nodes = plan_nodes(published_events, outbox_rows_of(outbox, key))
    assert not [node for node in nodes if node["Node Type"] == "Seq Scan"], nodes
    assert "ix_outbox_key" in {node.get("Index Name") for node in nodes}, nodes
    rows = published_events.execute(outbox_rows_of(outbox, key)).all()
    assert [row.key for row in rows] == [key]
