"""sessions and login failures

Revision ID: 20250919114711
Revises: 20250910121530
Create Date: 2025-09-19 11:47:11
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "20250919114711"
down_revision = "20250910121530"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("current_jti", UUID(as_uuid=True), nullable=False),
        sa.Column("previous_jti", UUID(as_uuid=True), nullable=True),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(["user_id"], ["users.users.id"], name="fk_sessions_user_id_users", ondelete="CASCADE"),
        schema="users",
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"], schema="users")
    op.create_table(
        "login_failures",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_login_failures"),
        schema="users",
    )


def downgrade() -> None:
    op.drop_table("login_failures", schema="users")
    op.drop_index("ix_sessions_user_id", table_name="sessions", schema="users")
    op.drop_table("sessions", schema="users")
