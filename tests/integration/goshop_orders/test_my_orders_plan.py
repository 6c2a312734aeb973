"""A page of my orders, however deep, reads a page of rows.

``GET /v1/orders`` pages by cursor (the last order's created_at and id),
newest first. The page's query walks ix_orders_user_newest (user_id,
created_at DESC, id DESC) from the cursor: no sort of the user's orders, and
no row before the cursor read and thrown away, so a page past the 4,000th of
a long history costs what the first does."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from goshop_orders.orders import encode_cursor, page_query
from tests.support import plan_nodes

MINE = 5000
OTHERS = 20000
PAGE = 20


@pytest.fixture
def long_history(db_connection):
    """One user with MINE orders over a year among OTHERS of other users,
    and the statistics that say so (rolled back with the test)."""
    me = uuid.uuid4()
    db_connection.exec_driver_sql(
        "INSERT INTO orders.orders (id, user_id, amount_cents, currency, status, created_at, updated_at) "
        "SELECT gen_random_uuid(), CASE WHEN i <= %(mine)s THEN %(me)s::uuid ELSE gen_random_uuid() END, "
        "100, 'RUB', 'paid', now() - random() * interval '365 days', now() "
        "FROM generate_series(1, %(all)s) AS i",
        {"mine": MINE, "me": str(me), "all": MINE + OTHERS},
    )
    db_connection.exec_driver_sql("ANALYZE orders.orders")
    return db_connection, me


def test_a_deep_page_of_my_orders_walks_the_index_from_the_cursor_not_a_sort(long_history):
    connection, me = long_history
    [after] = connection.execute(
        sa.text(
            "SELECT id, created_at FROM orders.orders WHERE user_id = :me "
            "ORDER BY created_at DESC, id DESC OFFSET 4000 LIMIT 1"
        ),
        {"me": me},
    ).all()
    nodes = plan_nodes(connection, page_query(me, PAGE + 1, encode_cursor(after)), analyze=True)
    kinds = {node["Node Type"] for node in nodes}
    assert "Sort" not in kinds, kinds
    assert "Seq Scan" not in kinds, kinds
    [scan] = [node for node in nodes if node.get("Index Name") == "ix_orders_user_newest"]
    # Started at the cursor: it read the page and nothing it threw away.
    assert scan["Actual Rows"] == PAGE + 1, scan
    assert scan.get("Rows Removed by Filter", 0) == 0, scan


def test_the_page_after_the_cursor_is_the_next_orders_newest_first(long_history):
    connection, me = long_history
    every = (
        connection.execute(
            sa.text("SELECT id FROM orders.orders WHERE user_id = :me ORDER BY created_at DESC, id DESC"), {"me": me}
        )
        .scalars()
        .all()
    )
    [after] = connection.execute(
        sa.text("SELECT id, created_at FROM orders.orders WHERE id = :id"), {"id": every[99]}
    ).all()
    page = connection.execute(page_query(me, PAGE, encode_cursor(after))).scalars().all()
    assert page == every[100 : 100 + PAGE]
