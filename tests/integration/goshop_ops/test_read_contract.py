"""The ops assistant reads other services' data and can write none of it."""

import uuid

import pytest
import sqlalchemy as sa

from goshop_orders.read_contract import ORDERS
from goshop_payments.read_contract import PAYMENTS


@pytest.mark.parametrize("table", [ORDERS, PAYMENTS], ids=["orders", "payments"])
def test_a_session_of_the_ops_app_refuses_to_write(ops_app, table):
    session = ops_app.registry.dbsession_factory()
    try:
        with pytest.raises(sa.exc.InternalError) as refused:
            session.execute(sa.delete(table).where(table.c.id == uuid.uuid4()))
        assert refused.value.orig.pgcode == "25006"  # read_only_sql_transaction
    finally:
        session.close()


def test_a_session_of_the_ops_app_still_reads(ops_app):
    session = ops_app.registry.dbsession_factory()
    try:
        assert session.execute(sa.select(sa.func.count()).select_from(ORDERS)).scalar_one() >= 0
    finally:
        session.close()
