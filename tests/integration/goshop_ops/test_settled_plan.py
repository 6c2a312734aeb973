"""The console's health strip counts the recently settled orders from an index.

A shop that has run for a year holds millions of orders, nearly all of them
settled long ago; the strip asks how many settled in the last minutes on every
page. It reads a range of ix_orders_settled_at, never the whole table."""

from __future__ import annotations

import datetime as dt

from goshop_ops.console.health import settled_orders, settled_query
from tests.support import plan_nodes

SETTLED_LONG_AGO = 5000


def test_the_strip_counts_recently_settled_orders_from_the_index_not_the_whole_table(db_connection):
    now = dt.datetime.now(dt.UTC)
    db_connection.exec_driver_sql(
        "INSERT INTO orders.orders (id, user_id, amount_cents, currency, status, created_at, updated_at) "
        "SELECT gen_random_uuid(), gen_random_uuid(), 100, 'USD', "
        "CASE WHEN mod(i, 10) = 0 THEN 'cancelled' ELSE 'paid' END, "
        "now() - interval '100 days' + i * interval '1 second', now() - interval '100 days' + i * interval '1 second' "
        "FROM generate_series(1, %(n)s) AS i",
        {"n": SETTLED_LONG_AGO},
    )
    db_connection.exec_driver_sql(
        "INSERT INTO orders.orders (id, user_id, amount_cents, currency, status, created_at, updated_at) VALUES "
        "(gen_random_uuid(), gen_random_uuid(), 100, 'USD', 'paid', now(), now()), "
        "(gen_random_uuid(), gen_random_uuid(), 105, 'USD', 'cancelled', now(), now()), "
        "(gen_random_uuid(), gen_random_uuid(), 110, 'USD', 'new', now(), now())"
    )
    db_connection.exec_driver_sql("ANALYZE orders.orders")

    nodes = plan_nodes(db_connection, settled_query(now))

    assert not [node for node in nodes if node["Node Type"] == "Seq Scan"], nodes
    assert "ix_orders_settled_at" in {node.get("Index Name") for node in nodes}, nodes
    assert settled_orders(db_connection, now - dt.timedelta(seconds=1)) == {"paid": 1, "cancelled": 1}
