"""retention: indexes that find ended sessions and finished login-failure windows

Revision ID: 20261201192000
Revises: 20261201160000
Create Date: 2026-12-01 19:20:00
"""

from alembic import op

from goshop_common.db.migrations import create_index_concurrently

revision = "20261201192000"
down_revision = "20261201160000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Concurrently: logins and refreshes go on while they build.
    create_index_concurrently(op, "ix_sessions_expires_at", "users", "sessions (expires_at)")
    create_index_concurrently(
        op, "ix_sessions_revoked_at", "users", "sessions (revoked_at) WHERE revoked_at IS NOT NULL"
    )
    create_index_concurrently(op, "ix_login_failures_window_started_at", "users", "login_failures (window_started_at)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS users.ix_login_failures_window_started_at")
    op.execute("DROP INDEX IF EXISTS users.ix_sessions_revoked_at")
    op.execute("DROP INDEX IF EXISTS users.ix_sessions_expires_at")
