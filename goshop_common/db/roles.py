"""A database role per duty.

Nothing at run time connects as a superuser or as the owner of a table:

- ``goshop_migrate`` owns every service's schema and what is in it. Only
  the migrations connect as it (env.py also ``SET ROLE``s to it, so a table
  an administrator migrates is still owned by it).
- ``goshop_users``, ``goshop_orders``, ``goshop_payments``: reads and writes
  in their own schema's tables, nothing else. A service's consumer connects
  as its service.
- ``goshop_outboxer``: reads and marks the outbox tables it relays.
- ``goshop_ops``: ``SELECT`` on the tables the read contracts name.
- ``goshop_maintenance``: the deletes the services' retention rules declare.

Two steps make them, both idempotent:

1. ``python -m goshop_common.db.roles``, run once per database with an
   administrator's ``GOSHOP_DATABASE_URL`` (a superuser, or a role with
   CREATEROLE that owns the database): creates the login roles with the
   passwords ``GOSHOP_DB_*_PASSWORD`` give, lets the migration role create
   schemas, and hands it any service schema an older release made.
2. Each service's migrations grant, in the revision that creates a table,
   what each role may do with it (the helpers below), so a schema's
   privileges travel with its history. ``tests/integration/goshop_common/
   test_roles.py`` holds the grants to the read contracts and retention rules.

Roles are cluster-wide: two shops on one PostgreSQL server share them.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any

import psycopg2
import sqlalchemy as sa
from psycopg2 import sql

from goshop_common import settings as s

if TYPE_CHECKING:
    from goshop_common.db.alembic_op import Op

MIGRATION = "goshop_migrate"
USERS = "goshop_users"
ORDERS = "goshop_orders"
PAYMENTS = "goshop_payments"
OUTBOXER = "goshop_outboxer"
OPS = "goshop_ops"
MAINTENANCE = "goshop_maintenance"
RUNTIME = (USERS, ORDERS, PAYMENTS, OUTBOXER, OPS, MAINTENANCE)

# The role each process connects as (by the name goshop_devtools.settings gives
# the process): its GOSHOP_DATABASE_URL names it.
PROCESS_ROLES = {
    "migrate": MIGRATION,
    "users": USERS,
    "orders": ORDERS,
    "orders-consumer": ORDERS,
    "payments": PAYMENTS,
    "payments-consumer": PAYMENTS,
    "outboxer": OUTBOXER,
    "ops": OPS,
    "maintenance": MAINTENANCE,
}

# Each role's password setting (RolesSettings), for the bootstrap.
PASSWORD_SETTINGS = {
    MIGRATION: "db_migrate_password",
    USERS: "db_users_password",
    ORDERS: "db_orders_password",
    PAYMENTS: "db_payments_password",
    OUTBOXER: "db_outboxer_password",
    OPS: "db_ops_password",
    MAINTENANCE: "db_maintenance_password",
}

# Read-write on a service's own tables; never TRUNCATE, REFERENCES or TRIGGER.
_READ_WRITE = "SELECT, INSERT, UPDATE, DELETE"


def _role_password(role: str) -> Any:
    """A database role's password: only the roles bootstrap reads it."""
    env = f"GOSHOP_DB_{role}_PASSWORD"
    return s.setting(
        env, s.text, s.DEV_DATABASE_PASSWORD, secret=True, required_in_production=True, database_password=True
    )


@dataclasses.dataclass(frozen=True)
class RolesSettings(s.DatabaseSettings):
    """The roles bootstrap's (``python -m goshop_common.db.roles``), run with an
    administrator's GOSHOP_DATABASE_URL: each role's password, which it sets;
    each process's own URL carries its role's."""

    db_migrate_password: str = _role_password("MIGRATE")
    db_users_password: str = _role_password("USERS")
    db_orders_password: str = _role_password("ORDERS")
    db_payments_password: str = _role_password("PAYMENTS")
    db_outboxer_password: str = _role_password("OUTBOXER")
    db_ops_password: str = _role_password("OPS")
    db_maintenance_password: str = _role_password("MAINTENANCE")


class PrivilegedRoleError(s.SettingsError):
    """Production was asked to run as a superuser or as an owner."""


# -- the bootstrap -------------------------------------------------------------------


def bootstrap(admin_url: str, passwords: dict[str, str]) -> None:
    """Create (or bring up to date) every role, with ``passwords`` by role
    name, and the database-level grants, as the administrator of
    ``admin_url``. Safe to run again: it also rotates passwords."""
    connection = psycopg2.connect(admin_url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for role in (MIGRATION, *RUNTIME):
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if cursor.fetchone() is None:
                    cursor.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
                # Every time, whatever an earlier release or a hand made: a
                # login with a password, and none of the cluster's powers.
                cursor.execute(
                    sql.SQL(
                        "ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %s"
                    ).format(sql.Identifier(role)),
                    (passwords[role],),
                )
            cursor.execute("SELECT current_database()")
            database = sql.Identifier(_one_row(cursor)[0])
            # CREATE: the migrations make their service's schema.
            cursor.execute(sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(database, _role(MIGRATION)))
            runtime = sql.SQL(", ").join(map(_role, RUNTIME))
            cursor.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, runtime))
            _adopt_service_schemas(cursor)
    finally:
        connection.close()


def _role(name: str) -> sql.Identifier:
    return sql.Identifier(name)


# A service schema is one that keeps an Alembic version table.
_FOREIGN_OWNED = """
    SELECT kind, name FROM (
        SELECT 'SCHEMA' AS kind, format('%%I', n.nspname) AS name, n.nspowner AS owner, n.nspname AS schema
          FROM pg_namespace n
        UNION ALL
        SELECT CASE WHEN c.relkind IN ('v', 'm') THEN 'VIEW' WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
               format('%%I.%%I', n.nspname, c.relname), c.relowner, n.nspname
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S')
           -- An identity column's sequence follows its table.
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
        UNION ALL
        SELECT 'FUNCTION', p.oid::regprocedure::text, p.proowner, n.nspname
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    ) owned
    WHERE schema IN (SELECT schemaname FROM pg_tables WHERE tablename = 'alembic_version')
      AND owner <> (SELECT oid FROM pg_roles WHERE rolname = %(migration)s)
    ORDER BY kind = 'SCHEMA' DESC, name
"""


def _one_row(cursor: psycopg2.extensions.cursor) -> tuple[Any, ...]:
    """The row of a query that always answers one."""
    row = cursor.fetchone()
    if row is None:
        raise psycopg2.ProgrammingError("no row where one was certain")
    return row


def _adopt_service_schemas(cursor: psycopg2.extensions.cursor) -> None:
    """Hand the migration role what an older release's migrations made as
    whoever they connected as: its later revisions must alter it."""
    cursor.execute(_FOREIGN_OWNED, {"migration": MIGRATION})
    for kind, name in cursor.fetchall():
        # kind is one of four words; name is quoted by format('%I') or regprocedure.
        cursor.execute(sql.SQL(f"ALTER {kind} {name} OWNER TO {{}}").format(_role(MIGRATION)))


def role_passwords(settings: RolesSettings) -> dict[str, str]:
    """Each role's password, by role name, from the bootstrap's settings."""
    return {role: getattr(settings, name) for role, name in PASSWORD_SETTINGS.items()}


def url_as(url: str, role: str, password: str) -> str:
    """``url``'s database and server, as ``role``."""
    return sa.engine.make_url(url).set(username=role, password=password).render_as_string(hide_password=False)


def main() -> int:
    """``python -m goshop_common.db.roles``: 0 when done, 2 for bad settings."""
    try:
        settings = s.load_settings(RolesSettings)
    except s.SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        bootstrap(settings.database_url, role_passwords(settings))
    except psycopg2.Error as exc:
        # The server's reason only: the statement may hold a password.
        print(f"error: {exc.pgerror or exc}".strip(), file=sys.stderr)
        return 1
    print(f"database roles ready: {', '.join((MIGRATION, *RUNTIME))}")
    return 0


# -- grants, for the migrations ---------------------------------------------------------
#
# ``op`` is Alembic's; names are the revision's own constants, never input.


def grant_own_schema(op: Op, schema: str, role: str) -> None:
    """``role`` reads and writes every table of ``schema``, those later
    revisions create included, but only reads its Alembic version table:
    the service's /ready compares it with the code's head."""
    op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    op.execute(f"GRANT {_READ_WRITE} ON ALL TABLES IN SCHEMA {schema} TO {role}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {_READ_WRITE} ON TABLES TO {role}")
    op.execute(f"REVOKE INSERT, UPDATE, DELETE ON {schema}.alembic_version FROM {role}")


def grant_read(op: Op, role: str, *tables: str) -> None:
    """``role`` may ``SELECT`` ``tables`` (``schema.table``), nothing more."""
    for table in tables:
        op.execute(f"GRANT USAGE ON SCHEMA {table.split('.')[0]} TO {role}")
        op.execute(f"GRANT SELECT ON {table} TO {role}")


def grant_relay(op: Op, table: str) -> None:
    """The outboxer claims rows of the outbox ``table`` and marks them."""
    op.execute(f"GRANT USAGE ON SCHEMA {table.split('.')[0]} TO {OUTBOXER}")
    op.execute(f"GRANT SELECT, UPDATE ON {table} TO {OUTBOXER}")


def grant_retention(op: Op, table: str, lock_column: str) -> None:
    """The maintenance worker deletes expired rows of ``table``
    (goshop_common.db.retention). Its batch picks them with ``FOR UPDATE
    SKIP LOCKED``, for which PostgreSQL wants UPDATE on one column: it gets
    ``lock_column`` (the key: a column nobody has reason to change) and never
    updates it."""
    op.execute(f"GRANT USAGE ON SCHEMA {table.split('.')[0]} TO {MAINTENANCE}")
    op.execute(f"GRANT SELECT, DELETE, UPDATE ({lock_column}) ON {table} TO {MAINTENANCE}")


def revoke_all(op: Op, schema: str) -> None:
    """Undo every grant above on ``schema``: a downgrade's."""
    roles = ", ".join(RUNTIME)
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {roles}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {roles}")
    op.execute(f"REVOKE USAGE ON SCHEMA {schema} FROM {roles}")


# -- refusing to run as a privileged role -----------------------------------------------

_PRIVILEGES = """
    SELECT r.rolsuper,
           EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspowner = r.oid AND n.nspname NOT LIKE 'pg\\_%')
        OR EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relowner = r.oid AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema')
      FROM pg_roles r WHERE r.rolname = current_user
"""


def refuse_privileged_role(dbapi_connection: psycopg2.extensions.connection) -> None:
    """Raise PrivilegedRoleError if the connection's role is a superuser
    or owns a schema or a table: such a role can do anything to them, which
    no process needs at run time."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        role = _one_row(cursor)[0]
        cursor.execute(_PRIVILEGES)
        superuser, owner = _one_row(cursor)
    # Not left open: the pool would otherwise reset it with a rollback anyway.
    dbapi_connection.rollback()
    if superuser or owner:
        what = "a superuser" if superuser else "the owner of a schema or table"
        raise PrivilegedRoleError(
            f"GOSHOP_DATABASE_URL connects as {role}, {what}; production runs as the process's own role "
            f"(goshop_common.db.roles: {', '.join(RUNTIME)})"
        )


def refuse_privileged_roles(engine: sa.Engine) -> None:
    """Check every new connection of ``engine`` (production's), and one now:
    a process that would run as a superuser or an owner does not start. A
    database that is not up yet is checked at its first connection instead."""
    sa.event.listen(engine, "connect", lambda dbapi_connection, _record: refuse_privileged_role(dbapi_connection))
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError:
        pass


if __name__ == "__main__":
    sys.exit(main())
