"""The relay's claim stays cheap while published rows pile up ahead of VACUUM.

Every published row leaves an entry in the outbox's pending-row indexes
until VACUUM removes it. On the outboxer's own connections
(RELAY_SERVER_SETTINGS) the claim walks those indexes with a plain index
scan, which marks the entries it finds dead, so the next claim skips them;
the planner's own choice, a bitmap scan, visits every one of their rows in
the heap on every pass."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from goshop_common.clock import utcnow
from goshop_common.db.session import make_engine
from goshop_orders.models import OUTBOX
from goshop_outboxer.__main__ import RELAY_SERVER_SETTINGS
from goshop_outboxer.relay import Relay

PUBLISHED = 4000
PENDING = 5


@pytest.fixture
def own_settings(pg_server, settings):
    """A database of this test's own: the dead index entries are marked only
    when no transaction in the database is older, and in the session's shared
    one another test's connection could be (it failed so in CI)."""
    from goshop_orders.migrate import main as migrate_orders
    from tests.support import create_roles, with_settings

    url = pg_server.create_database("goshop_claim")
    create_roles(url)
    assert migrate_orders(["--database-url", url, "up"]) == 0
    yield with_settings(settings, database_url=url)
    pg_server.drop_database(url)


@pytest.fixture
def outbox_without_autovacuum(own_settings):
    """The outbox with PUBLISHED rows published (each one an UPDATE, as the
    relay marks them) and PENDING rows waiting; autovacuum kept off the table,
    so that the dead entries stay until the test ends."""
    clean_db = make_engine(own_settings)
    with clean_db.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE orders.outbox SET (autovacuum_enabled = false)")
    try:
        for published in (True, False):
            count = PUBLISHED if published else PENDING
            with clean_db.begin() as connection:
                ids = connection.execute(
                    OUTBOX.insert().returning(OUTBOX.c.id),
                    [
                        {
                            "event_id": uuid.uuid4(),
                            "topic": "orders.events",
                            "key": str(uuid.uuid4()),
                            "event_type": "order.created",
                            # About an order.created event's size.
                            "payload": {"pad": "x" * 300},
                        }
                        for _ in range(count)
                    ],
                ).scalars()
                if published:
                    connection.execute(
                        OUTBOX.update().where(OUTBOX.c.id.in_(list(ids))).values(published_at=sa.func.now())
                    )
        yield clean_db
    finally:
        clean_db.dispose()


def claim_plan(engine: sa.Engine, *planner: str) -> dict:
    """The relay's claim, run under EXPLAIN (ANALYZE, BUFFERS) and rolled
    back; ``planner``: planner settings for its transaction."""
    statement = Relay(engine, OUTBOX, None, 100, 1000, 60)._claim_query.compile(dialect=engine.dialect)
    with engine.connect() as connection:
        try:
            for setting in planner:
                connection.exec_driver_sql(f"SET LOCAL {setting}")
            [[plan]] = connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", statement.construct_params({"now": utcnow()})
            ).all()
        finally:
            connection.rollback()
    return plan[0]


def node_types(node: dict) -> set[str]:
    return {node["Node Type"]} | {kind for child in node.get("Plans", ()) for kind in node_types(child)}


def relay_claim_plan(settings) -> dict:
    """The claim on an engine of the outboxer's, after one claim before it."""
    engine = make_engine(settings, server_settings=RELAY_SERVER_SETTINGS, pool_size=1, max_overflow=0)
    try:
        claim_plan(engine)  # the first claim since the rows were published marks their entries
        return claim_plan(engine)
    finally:
        engine.dispose()


def blocks(plan: dict) -> int:
    return plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]


def test_the_outboxers_claim_never_uses_a_bitmap_scan(own_settings, outbox_without_autovacuum):
    plan = relay_claim_plan(own_settings)
    assert plan["Plan"]["Actual Rows"] == PENDING
    assert "Bitmap Heap Scan" not in node_types(plan["Plan"])


def test_a_bitmap_scan_claim_reads_many_times_the_pages_of_the_outboxers(own_settings, outbox_without_autovacuum):
    # What the planner chooses when its statistics predate the rows (as they
    # did in the shop under load), made certain here; RELAY_SERVER_SETTINGS
    # rules it out. It visits every published row's heap page, every pass.
    # Without index scans the planner could also read the whole table once
    # its statistics know the rows (it did in CI): that is ruled out too.
    forced = ("enable_indexscan = off", "enable_seqscan = off")
    claim_plan(outbox_without_autovacuum, *forced)
    bitmap = claim_plan(outbox_without_autovacuum, *forced)
    assert "Bitmap Heap Scan" in node_types(bitmap["Plan"])
    relay = relay_claim_plan(own_settings)
    assert bitmap["Plan"]["Actual Rows"] == relay["Plan"]["Actual Rows"] == PENDING
    assert blocks(bitmap) > 4 * blocks(relay), (blocks(bitmap), blocks(relay))
