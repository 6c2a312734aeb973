"""Login sessions and refresh-token rotation.

A session is a refresh-token family. Refreshing rotates it: the presented token
stops working and a successor is issued. Presenting a rotated token again means
it was copied — unless it comes back within ``reuse_interval`` seconds of the
rotation, which is two tabs refreshing at once. The first case revokes the whole
family; the second gets the successor the first caller got (same refresh token
id, a fresh access token), so both tabs carry on with one family. The grace is
given once per rotation and logged: a third use of the rotated token (a thief
racing the owner) revokes the family.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session as DbSession

from goshop_users.models import Session, User
from goshop_users.tokens import TokenIssuer

log = logging.getLogger("goshop.users.sessions")

REUSE_DETECTED = "refresh token reuse"
LOGOUT = "logout"
LOGOUT_ALL = "logout_all"
ENDED_BY_OWNER = "ended by owner"
LOGOUT_OTHERS = "logout_others"
# Enough to tell one browser from another; a client cannot store a novel here.
USER_AGENT_MAX = 256


def _printable(text: str | None) -> str:
    # A header's bytes arrive as latin-1 text: no control characters (PostgreSQL
    # refuses NUL in text), nothing that could split a line where it is shown.
    return "".join(c for c in text or "" if c.isprintable())


@dataclasses.dataclass(frozen=True)
class TokenPair:
    """What login and refresh answer; ``as_json`` has the fields of an
    OAuth 2.0 token response (RFC 6749, section 5.1)."""

    access_token: str
    refresh_token: str
    expires_in: int

    def as_json(self) -> dict:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


class RefreshRejected(Exception):
    """The refresh token cannot be used (unknown, revoked, expired or reused)."""


class Sessions:
    """Opens, rotates and revokes login sessions. Writes through ``db`` and
    never commits: the caller's transaction does, or rolls it all back."""

    def __init__(
        self,
        db: DbSession,
        issuer: TokenIssuer,
        refresh_ttl: int,
        reuse_interval: int,
        clock: Callable[[], dt.datetime],
    ):
        self.db = db
        self.issuer = issuer
        self.refresh_ttl = dt.timedelta(seconds=refresh_ttl)
        self.reuse_interval = dt.timedelta(seconds=reuse_interval)
        self.clock = clock

    def _pair(self, user: User, session: Session, now: dt.datetime) -> TokenPair:
        # The refresh token names the session's current id, and expires with the session.
        return TokenPair(
            access_token=self.issuer.access_token(user.id, user.email, session.id, now),
            refresh_token=self.issuer.refresh_token(user.id, session.id, session.current_jti, now, session.expires_at),
            expires_in=self.issuer.access_ttl,
        )

    def open(self, user: User, user_agent: str | None = None, client_address: str | None = None) -> TokenPair:
        """A new session for a user who just proved their password, from
        ``user_agent`` at ``client_address``."""
        now = self.clock()
        session = Session(
            id=uuid.uuid4(),
            user_id=user.id,
            current_jti=uuid.uuid4(),
            created_at=now,
            expires_at=now + self.refresh_ttl,
            user_agent=_printable(user_agent)[:USER_AGENT_MAX] or None,
            client_address=client_address,
        )
        self.db.add(session)
        return self._pair(user, session, now)

    def _locked(self, claims: dict) -> Session | None:
        """The session the claims name, row-locked until the transaction ends;
        None for malformed claims or a session that is not the subject's."""
        try:
            session_id = uuid.UUID(claims["sid"])
            user_id = uuid.UUID(claims["sub"])
        except (KeyError, ValueError):
            return None
        # The row lock serialises two refreshes of one family, so exactly one
        # of them rotates and the other sees the rotation.
        session = self.db.get(Session, session_id, with_for_update=True)
        if session is None or session.user_id != user_id:
            return None
        return session

    def refresh(self, claims: dict) -> TokenPair:
        """Rotate the family of a verified refresh token. Raises RefreshRejected;
        when that was a reuse, the family is revoked first (the caller must
        still commit)."""
        now = self.clock()
        session = self._locked(claims)
        if session is None or session.revoked_at is not None or session.expires_at <= now:
            raise RefreshRejected("session is not active")
        try:
            jti = uuid.UUID(claims["jti"])
        except ValueError:
            raise RefreshRejected("malformed token id") from None
        # For the access token's email claim.
        user = self.db.get(User, session.user_id)
        if jti == session.current_jti:
            session.previous_jti = jti
            session.current_jti = uuid.uuid4()
            session.rotated_at = now
            # Sliding: each rotation gives the family a full refresh_ttl again.
            session.expires_at = now + self.refresh_ttl
            return self._pair(user, session, now)
        if (
            jti == session.previous_jti
            and session.rotated_at is not None
            and now - session.rotated_at <= self.reuse_interval
        ):
            # Once: forgetting the rotated id makes a second replay look like
            # what it is, a copy, and revokes the family below.
            session.previous_jti = None
            log.info("refresh grace used", extra={"session_id": str(session.id), "user_id": str(session.user_id)})
            # The successor the first caller got: current_jti is unchanged.
            return self._pair(user, session, now)
        # Neither the current id nor a grace: a copy. The whole family goes.
        session.revoked_at = now
        session.revoked_reason = REUSE_DETECTED
        raise RefreshRejected(REUSE_DETECTED)

    def revoke(self, claims: dict) -> bool:
        """Log out the session a refresh token belongs to. Idempotent: True
        whether it was revoked now or before; False for a token of no session."""
        session = self._locked(claims)
        if session is None:
            return False
        if session.revoked_at is None:
            session.revoked_at = self.clock()
            session.revoked_reason = LOGOUT
        return True

    def revoke_all(self, user_id: uuid.UUID) -> int:
        """Revoke every active session of the user; returns how many were active."""
        now = self.clock()
        # Expired sessions are left alone: the count is of sessions ended now.
        result = self.db.execute(
            sa.update(Session).where(*self._active(user_id, now)).values(revoked_at=now, revoked_reason=LOGOUT_ALL)
        )
        return result.rowcount

    def _active(self, user_id: uuid.UUID, now: dt.datetime):
        return (Session.user_id == user_id, Session.revoked_at.is_(None), Session.expires_at > now)

    def active(self, user_id: uuid.UUID) -> list[Session]:
        """The user's sessions that can still refresh, newest first."""
        query = sa.select(Session).where(*self._active(user_id, self.clock()))
        return list(self.db.scalars(query.order_by(Session.created_at.desc(), Session.id.desc())))

    def end(self, user_id: uuid.UUID, session_id: str) -> bool:
        """End one of the user's active sessions; False when ``session_id``
        names none of them (someone else's, unknown, already ended or not an
        id), so a stranger's session cannot be told from a missing one."""
        try:
            key = uuid.UUID(session_id)
        except ValueError:
            return False
        now = self.clock()
        result = self.db.execute(
            sa.update(Session)
            .where(Session.id == key, *self._active(user_id, now))
            .values(revoked_at=now, revoked_reason=ENDED_BY_OWNER)
        )
        return result.rowcount == 1

    def end_others(self, user_id: uuid.UUID, current: uuid.UUID) -> int:
        """End every active session of the user but ``current``; how many."""
        now = self.clock()
        result = self.db.execute(
            sa.update(Session)
            .where(Session.id != current, *self._active(user_id, now))
            .values(revoked_at=now, revoked_reason=LOGOUT_OTHERS)
        )
        return result.rowcount
