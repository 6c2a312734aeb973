"""create users

Revision ID: 20250910121530
Revises:
Create Date: 2025-09-10 12:15:30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "20250910121530"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        # Emails are stored normalised; the database refuses any other form.
        sa.CheckConstraint("email = lower(btrim(email))", name="ck_users_email_normalised"),
        schema="users",
    )


def downgrade() -> None:
    op.drop_table("users", schema="users")
