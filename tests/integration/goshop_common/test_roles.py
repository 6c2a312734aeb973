"""A database role per duty (goshop_common.db.roles), proven with real SQL on
the migrated database: each runtime role can do its job and is refused the
rest, its grants are exactly what the read contracts, the retention rules and
the outbox setting declare, and production will not run as a superuser or an
owner."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg2
import psycopg2.errors
import pytest
import sqlalchemy as sa

from goshop_common.db import roles
from goshop_common.db.retention import delete_batch
from goshop_common.db.session import make_engine
from goshop_devtools.settings import settings_of
from goshop_maintenance.rules import every_rule
from goshop_orders.read_contract import ORDERS, ORDERS_INBOX, ORDERS_OUTBOX
from goshop_payments.read_contract import PAYMENTS, PAYMENTS_INBOX, PAYMENTS_OUTBOX
from goshop_users.read_contract import READABLE_COLUMNS
from tests.support import create_roles, role_url, service_tables, with_settings

WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def as_role(database_url) -> Iterator:
    """``as_role(role, sql)``: run ``sql`` as ``role`` on the test database,
    in a transaction rolled back afterwards; the PostgreSQL error, if any."""

    def run(role: str, statement: str) -> psycopg2.Error | None:
        connection = psycopg2.connect(role_url(database_url, role))
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        except psycopg2.Error as exc:
            return exc
        finally:
            connection.rollback()
            connection.close()
        return None

    return run


def refused(error: psycopg2.Error | None) -> bool:
    return isinstance(error, psycopg2.errors.InsufficientPrivilege)


def privileges(engine: sa.Engine, role: str) -> dict[str, set[str]]:
    """What ``role`` may do to each service table: table-level privileges,
    and ``UPDATE (column)`` for a column-level one."""
    granted: dict[str, set[str]] = {}
    with engine.connect() as connection:
        for table in service_tables(connection):
            table_level = {
                privilege
                for privilege in ("SELECT", *WRITES)
                if connection.execute(
                    sa.text("SELECT has_table_privilege(:role, :table, :privilege)"),
                    {"role": role, "table": table, "privilege": privilege},
                ).scalar_one()
            }
            columns = connection.execute(
                sa.text(
                    "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:table AS regclass) AND attnum > 0"
                    " AND NOT attisdropped AND has_column_privilege(:role, attrelid, attnum, 'UPDATE')"
                    " ORDER BY attnum"
                ),
                {"role": role, "table": table},
            ).scalars()
            if "UPDATE" not in table_level:
                table_level |= {f"UPDATE ({column})" for column in columns}
            if table_level:
                granted[table] = table_level
    return granted


def test_the_users_role_cannot_read_orders(as_role):
    assert as_role(roles.USERS, "SELECT 1 FROM users.users") is None
    assert refused(as_role(roles.USERS, "SELECT * FROM orders.orders"))
    assert refused(as_role(roles.USERS, "SELECT * FROM payments.payments"))


def test_each_service_role_reads_and_writes_its_own_schema_only(engine):
    for role, schema in ((roles.USERS, "users"), (roles.ORDERS, "orders"), (roles.PAYMENTS, "payments")):
        granted = privileges(engine, role)
        assert {table.split(".")[0] for table in granted} == {schema}, role
        own = [table for table in service_tables(engine) if table.startswith(f"{schema}.")]
        assert granted == {key: {"SELECT", "INSERT", "UPDATE", "DELETE"} for key in own}, role


def test_a_service_reads_its_own_version_table_and_no_runtime_role_writes_one(as_role):
    own = {roles.USERS: "users", roles.ORDERS: "orders", roles.PAYMENTS: "payments"}
    for role in roles.RUNTIME:
        for schema in ("users", "orders", "payments"):
            read = as_role(role, f"SELECT * FROM {schema}.alembic_version")
            # Its own, for /ready (goshop_common.web.health): the schema is at the code's head.
            assert (read is None) if own.get(role) == schema else refused(read), (role, schema)
            assert refused(as_role(role, f"UPDATE {schema}.alembic_version SET version_num = 'x'")), (role, schema)


def test_ops_reads_what_the_read_contracts_name_and_writes_nothing(engine, as_role):
    contract = {f"{t.schema}.{t.name}" for t in (ORDERS, ORDERS_OUTBOX, ORDERS_INBOX)}
    contract |= {f"{t.schema}.{t.name}" for t in (PAYMENTS, PAYMENTS_OUTBOX, PAYMENTS_INBOX)}
    assert privileges(engine, roles.OPS) == {key: {"SELECT"} for key in contract}
    for table in service_tables(engine):
        assert refused(as_role(roles.OPS, f"DELETE FROM {table}")), table
        assert refused(as_role(roles.OPS, f"UPDATE {table} SET {_first_column(engine, table)} = NULL")), table
    assert refused(as_role(roles.OPS, "INSERT INTO orders.orders (id) VALUES (gen_random_uuid())"))
    assert refused(as_role(roles.OPS, "SELECT * FROM users.users"))


def test_ops_reads_an_accounts_id_and_email_and_nothing_else_of_users(engine, as_role):
    # The console finds a customer's orders by email (goshop_users.read_contract).
    with engine.connect() as connection:
        readable = {
            column
            for column in ("id", "email", "password_hash", "created_at")
            if connection.execute(
                sa.text("SELECT has_column_privilege(:role, 'users.users', :column, 'SELECT')"),
                {"role": roles.OPS, "column": column},
            ).scalar_one()
        }
    assert readable == set(READABLE_COLUMNS)
    assert as_role(roles.OPS, "SELECT id, email FROM users.users WHERE email = 'a@example.com'") is None
    assert refused(as_role(roles.OPS, "SELECT password_hash FROM users.users"))
    assert refused(as_role(roles.OPS, "SELECT * FROM users.sessions"))
    assert refused(as_role(roles.OPS, "UPDATE users.users SET email = email"))


def test_the_outboxer_reads_and_marks_the_outboxes_only(engine, as_role):
    outboxes = {f"{schema}.outbox" for schema in settings_of({}, {}, service="outboxer").outbox_schemas}
    assert privileges(engine, roles.OUTBOXER) == {key: {"SELECT", "UPDATE"} for key in outboxes}
    assert as_role(roles.OUTBOXER, "UPDATE orders.outbox SET published_at = now() WHERE false") is None
    assert refused(as_role(roles.OUTBOXER, "SELECT * FROM users.users"))
    assert refused(as_role(roles.OUTBOXER, "SELECT * FROM orders.orders"))
    assert refused(as_role(roles.OUTBOXER, "DELETE FROM orders.outbox"))


def test_maintenance_deletes_only_what_retention_declares(engine, as_role, database_url):
    rules = every_rule(settings_of({}, {}, service="maintenance"))
    declared = {rule.name for rule in rules}
    granted = privileges(engine, roles.MAINTENANCE)
    assert set(granted) == declared
    for table, privilege in granted.items():
        # SELECT and one column's UPDATE are what PostgreSQL asks of the
        # batch's FOR UPDATE SKIP LOCKED (goshop_common.db.roles.grant_retention).
        assert {"SELECT", "DELETE"} < privilege, (table, privilege)
        assert len(privilege) == 3, (table, privilege)
        assert any(p.startswith("UPDATE (") for p in privilege), (table, privilege)
    # Each rule's batch runs as the maintenance role.
    maintenance = sa.create_engine(
        role_url(database_url, roles.MAINTENANCE).replace("postgresql://", "postgresql+psycopg2://"),
        poolclass=sa.pool.NullPool,
    )
    try:
        for rule in rules:
            assert delete_batch(maintenance, rule, NOW, 10) >= 0
    finally:
        maintenance.dispose()
    for table in set(service_tables(engine)) - declared:
        assert refused(as_role(roles.MAINTENANCE, f"DELETE FROM {table}")), table
    assert refused(as_role(roles.MAINTENANCE, "INSERT INTO orders.inbox (event_id) VALUES (gen_random_uuid())"))


def test_no_runtime_role_is_a_superuser_or_owns_anything(engine):
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb,"
                " EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid),"
                " EXISTS (SELECT 1 FROM pg_namespace WHERE nspowner = r.oid)"
                " FROM pg_roles r WHERE rolname = ANY(:roles) ORDER BY rolname"
            ),
            {"roles": list(roles.RUNTIME)},
        ).all()
        owners = connection.execute(
            sa.text(
                "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace"
                " WHERE nspname IN ('users', 'orders', 'payments')"
            )
        ).scalars()
        assert set(owners) == {roles.MIGRATION}
    assert sorted(row[0] for row in rows) == sorted(roles.RUNTIME)
    assert all(row[1:] == (False, False, False, False, False) for row in rows), rows


def production_settings(url: str):
    """Production's settings for the maintenance worker on ``url``. The
    test roles have the development password, which production refuses
    before any connection: the URL is put in after the settings are loaded."""
    loaded = settings_of(
        {}, {"GOSHOP_ENV": "production", "GOSHOP_DATABASE_URL": "postgresql://x:not-dev@db/x"}, service="maintenance"
    )
    return with_settings(loaded, database_url=url)


def test_production_refuses_to_start_as_a_superuser_or_an_owner(database_url):
    # The harness's own URL is the server's superuser; the migration role owns the tables.
    for url, what in ((database_url, "a superuser"), (role_url(database_url, roles.MIGRATION), "the owner")):
        with pytest.raises(roles.PrivilegedRoleError, match=f"{what}.*production runs as the process's own role"):
            make_engine(production_settings(url))
    engine = make_engine(production_settings(role_url(database_url, roles.MAINTENANCE)))
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT current_user")).scalar_one() == roles.MAINTENANCE
    finally:
        engine.dispose()


def test_the_bootstrap_runs_again_and_hands_an_older_schema_to_the_migration_role(pg_server):
    url = pg_server.create_database("goshop_roles")
    try:
        # An older release: a service schema made by the administrator.
        admin = psycopg2.connect(url)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute("CREATE SCHEMA legacy")
            cursor.execute("CREATE TABLE legacy.alembic_version (version_num text)")
            cursor.execute("CREATE TABLE legacy.things (id bigint GENERATED BY DEFAULT AS IDENTITY, name text)")
        create_roles(url)
        create_roles(url)
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace"
                " WHERE nspname = 'legacy' UNION SELECT pg_get_userbyid(nspowner) FROM pg_namespace"
                " WHERE nspname = 'legacy'"
            )
            assert {row[0] for row in cursor.fetchall()} == {roles.MIGRATION}
        admin.close()
    finally:
        pg_server.drop_database(url)


def _first_column(engine: sa.Engine, table: str) -> str:
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum = 1"),
            {"t": table},
        ).scalar_one()
