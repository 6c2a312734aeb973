"""sessions: the login's user agent and client address

Revision ID: 20261201160000
Revises: 20250919114711
Create Date: 2026-12-01 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261201160000"
down_revision = "20250919114711"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: sessions opened before this migration have neither.
    op.add_column("sessions", sa.Column("user_agent", sa.Text(), nullable=True), schema="users")
    op.add_column("sessions", sa.Column("client_address", sa.Text(), nullable=True), schema="users")


def downgrade() -> None:
    op.drop_column("sessions", "client_address", schema="users")
    op.drop_column("sessions", "user_agent", schema="users")
