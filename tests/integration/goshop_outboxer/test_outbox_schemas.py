"""The outboxer relays the outboxes of the schemas its setting names, and a
notification wakes the relay of the schema it names. The schema here is one
no service owns, made by the same migration step the services use: the
outboxer needs no code of theirs."""

from __future__ import annotations

import threading
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from goshop_common.messaging.kafka import ensure_topics, make_producer
from goshop_common.messaging.outbox import add_outbox_trace_context_v2, create_outbox_v1, outbox_table
from goshop_common.settings import SettingsError
from goshop_devtools.settings import settings_of
from goshop_outboxer.__main__ import build
from goshop_outboxer.worker import outbox_listener
from tests.saga_runtime import wait_until
from tests.support import with_settings


@pytest.fixture
def schema(engine):
    name = f"extra_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {name}")
        # Every step a service's migrations take to make its outbox.
        op = SimpleNamespace(execute=connection.exec_driver_sql)
        create_outbox_v1(op, name)
        add_outbox_trace_context_v2(op, name)
    yield name
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def topic(kafka_broker):
    name = f"test.schemas-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_broker.bootstrap, topics=[name])
    return name


@pytest.fixture
def producer(kafka_broker):
    producer = make_producer(kafka_broker.bootstrap)
    yield producer
    producer.close(timeout=5)


def add_row(engine, schema: str, topic: str) -> int:
    table = outbox_table(sa.MetaData(schema=schema))
    event_id = uuid.uuid4()
    with engine.begin() as connection:
        return connection.execute(
            table.insert()
            .values(event_id=event_id, topic=topic, key="k", event_type="test.event", payload={"n": 1})
            .returning(table.c.id)
        ).scalar_one()


def published(engine, schema: str, row_id: int) -> bool:
    table = outbox_table(sa.MetaData(schema=schema))
    with engine.connect() as connection:
        return connection.execute(sa.select(table.c.published_at).where(table.c.id == row_id)).scalar_one() is not None


def test_the_outboxer_relays_the_outbox_of_a_schema_named_in_its_setting(
    settings, engine, schema, topic, producer, kafka_broker
):
    outboxer = build(
        with_settings(settings, outbox_schemas=(schema,), kafka_bootstrap=kafka_broker.bootstrap), engine, producer
    )
    assert [relay.table.schema for relay in outboxer.relays] == [schema]
    runner = threading.Thread(target=outboxer.run, daemon=True)
    runner.start()
    try:
        row_id = add_row(engine, schema, topic)
        wait_until(lambda: published(engine, schema, row_id), timeout=15, message="row published")
    finally:
        outboxer.stop()
        runner.join(10)
    assert not runner.is_alive()


def test_a_pass_woken_for_one_schema_leaves_the_other_outboxes_alone(settings, engine, schema, topic, producer):
    outboxer = build(with_settings(settings, outbox_schemas=(schema,)), engine, producer, listen=False)
    row_id = add_row(engine, schema, topic)
    outboxer.pass_once(frozenset({"orders"}))
    assert not published(engine, schema, row_id)
    outboxer.pass_once(frozenset({schema}))
    assert published(engine, schema, row_id)


def test_a_notification_names_the_schema_whose_outbox_had_a_commit(database_url, engine, schema, topic):
    listener = outbox_listener(database_url)
    try:
        assert listener.wait(0.05) == frozenset()  # connects and LISTENs
        add_row(engine, schema, topic)
        assert listener.wait(5) == frozenset({schema})
    finally:
        listener.close()


@pytest.mark.parametrize("raw", [" , ", "Orders", "orders; DROP TABLE x", "1st"])
def test_an_outbox_schema_setting_that_is_not_a_list_of_schema_names_is_refused(raw):
    with pytest.raises(SettingsError, match="GOSHOP_OUTBOX_SCHEMAS"):
        settings_of({}, environ={"GOSHOP_OUTBOX_SCHEMAS": raw}, service="outboxer")


def test_the_outboxer_relays_orders_and_payments_by_default():
    assert settings_of({}, environ={}, service="outboxer").outbox_schemas == ("orders", "payments")
