"""Models against migrations: for each service, Alembic's own autogenerate
comparison of its models' metadata with a database migrated by the real
migrations must find nothing. A difference means a model or a migration is
wrong, and the next ``--autogenerate`` would write it into a revision."""

from __future__ import annotations

import pprint

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from goshop_common.db.session import sqlalchemy_url
from goshop_orders import models as orders_models
from goshop_payments import models as payments_models
from goshop_users import models as users_models

VERSION_TABLE = "alembic_version"

SERVICES = {
    "users": users_models,
    "orders": orders_models,
    "payments": payments_models,
}


def schema_filter(schema: str):
    """Only this service's schema, and not Alembic's version table in it."""

    def include_name(name, type_, parent_names):
        if type_ == "schema":
            return name == schema
        if type_ == "table":
            return name != VERSION_TABLE and parent_names.get("schema_name") == schema
        return True

    def include_object(obj, name, type_, reflected, compare_to):
        if type_ == "table":
            return obj.schema == schema and name != VERSION_TABLE
        return True

    return include_name, include_object


def drift(connection: sa.Connection, metadata: sa.MetaData, schema: str) -> list:
    include_name, include_object = schema_filter(schema)
    context = MigrationContext.configure(
        connection,
        opts={
            "target_metadata": metadata,
            "include_schemas": True,
            "include_name": include_name,
            "include_object": include_object,
            "version_table_schema": schema,
            "compare_type": True,
            "compare_server_default": True,
        },
    )
    return compare_metadata(context, metadata)


@pytest.mark.parametrize("service", list(SERVICES))
def test_models_match_the_migrated_schema(database_url, service):
    models = SERVICES[service]
    assert {table.schema for table in models.Base.metadata.tables.values()} == {models.SCHEMA}

    engine = sa.create_engine(sqlalchemy_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            diffs = drift(connection, models.Base.metadata, models.SCHEMA)
    finally:
        engine.dispose()

    assert diffs == [], f"{service}: models and migrations differ:\n{pprint.pformat(diffs)}"


def test_the_comparison_sees_a_missing_index(database_url):
    """The check is not vacuous: an index the migrations created but a model
    does not declare is reported."""
    metadata = sa.MetaData()
    for table in payments_models.Base.metadata.tables.values():
        copy = table.to_metadata(metadata)
        for index in list(copy.indexes):
            copy.indexes.discard(index)
    for column in metadata.tables["payments.payments"].columns:
        column.index = None

    engine = sa.create_engine(sqlalchemy_url(database_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            diffs = drift(connection, metadata, payments_models.SCHEMA)
    finally:
        engine.dispose()

    removed = [diff[1].name for diff in diffs if diff[0] == "remove_index"]
    assert "ix_payments_user_id" in removed, pprint.pformat(diffs)
