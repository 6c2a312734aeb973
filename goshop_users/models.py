"""The users schema: accounts, login sessions (refresh-token families) and
failed-login counters."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from goshop_common.db.session import NAMING_CONVENTION

SCHEMA = "users"


class Base(DeclarativeBase):
    # Every table in the service's own schema, its constraints named as the
    # migrations name them.
    metadata = sa.MetaData(schema=SCHEMA, naming_convention=NAMING_CONVENTION)
    # Every model maps one Table (DeclarativeBase types it as any FromClause),
    # whose insert(), update() and delete() the service's statements build on.
    __table__: ClassVar[sa.Table]


class User(Base):
    """An account: an email and the hash of its password."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    # Stored normalised (trimmed, lower-case); the unique constraint is then
    # case-insensitive without citext and its text = citext pitfalls.
    email: Mapped[str] = mapped_column(sa.Text, unique=True)
    # argon2's encoded form, parameters included: goshop_users.passwords can
    # tell a hash made with older parameters and upgrade it at login.
    password_hash: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())


class Session(Base):
    """One login: a refresh-token family. Only the newest refresh token's id
    (``current_jti``) refreshes; the one before it is remembered so that a
    concurrent second use within the reuse interval can be told from theft."""

    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    # An account's sessions go with it.
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), sa.ForeignKey("users.users.id", ondelete="CASCADE"))
    current_jti: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    previous_jti: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    rotated_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(sa.Text)
    # What the owner sees in their list of sessions: the login's User-Agent
    # (cut to USER_AGENT_MAX characters) and client address.
    user_agent: Mapped[str | None] = mapped_column(sa.Text)
    client_address: Mapped[str | None] = mapped_column(sa.Text)

    # Named explicitly, as the migration named it: index=True would name it
    # after the naming convention's column_0_label, ix_users_sessions_user_id.
    # The two others are how retention finds ended sessions (goshop_users.retention).
    __table_args__ = (
        sa.Index("ix_sessions_user_id", "user_id"),
        sa.Index("ix_sessions_expires_at", "expires_at"),
        sa.Index("ix_sessions_revoked_at", "revoked_at", postgresql_where=sa.text("revoked_at IS NOT NULL")),
    )


class LoginFailure(Base):
    """Failed logins counted per key in a fixed window that starts at the first
    failure: ``pair:<sha256(email)>:<client>``, ``client:<client>`` or
    ``email:<sha256(email)>`` (goshop_users.throttle). The client is an IPv4
    address or an IPv6 /64."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    failures: Mapped[int] = mapped_column(sa.Integer)
    window_started_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))

    # How retention finds the counters whose window is over (goshop_users.retention).
    __table_args__ = (sa.Index("ix_login_failures_window_started_at", "window_started_at"),)
