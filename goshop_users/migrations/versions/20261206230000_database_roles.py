"""users: what each database role may do in the users schema

Revision ID: 20261206230000
Revises: 20261201192000
Create Date: 2026-12-06 23:00:00

The users service reads and writes its tables (and those later revisions
add); the maintenance worker deletes what goshop_users.retention declares.
Nobody else is let in. The roles themselves are made by
``python -m goshop_common.db.roles``, before the migrations.
"""

from alembic import op

from goshop_common.db.roles import USERS, grant_own_schema, grant_retention, revoke_all

revision = "20261206230000"
down_revision = "20261201192000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    grant_own_schema(op, "users", USERS)
    grant_retention(op, "users.sessions", "id")
    grant_retention(op, "users.login_failures", "key")


def downgrade() -> None:
    revoke_all(op, "users")
