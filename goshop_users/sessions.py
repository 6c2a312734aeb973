"""Login sessions and refresh-token rotation.

A session is a refresh-token family. Refreshing rotates it: the presented token
stops working and a successor is issued. Presenting a rotated token again means
it was copied — unless it comes back within ``reuse_interval`` seconds of the
rotation, which is two tabs refreshing at once. The first case revokes the whole
family; the second gets the successor the first caller got (same refresh token
id, a fresh access token), so both tabs carry on with one family. The grace is
given once per rotation and logged: a third use of the rotated token (a thief
racing the owner) revokes the family.

Only a live session manages sessions: listing them, ending one, ending the
others or all of them is refused (SessionEnded) to an access token whose own
session has ended, though the token is still good for reading until its
``exp``. A thief whose session the owner ended cannot end the owner's. The
check rides in the statement each of them makes anyway (see ``_live_only``).
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


class SessionEnded(Exception):
    """The session of the access token presented has ended (revoked, logged
    out or expired): its token may still read, but no longer manages sessions."""


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who manages sessions: the user and the session of a verified access token."""

    user_id: uuid.UUID
    session_id: uuid.UUID

    @classmethod
    def of(cls, claims: dict) -> Caller:
        """From verified access-token claims; SessionEnded for a token that
        names no session (users never issues one)."""
        try:
            return cls(uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"]))
        except (KeyError, TypeError, ValueError):
            raise SessionEnded(claims.get("sid")) from None


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
        # For the access token's email claim. The locked session holds its
        # user (the foreign key cascades), so the user is there.
        user = self.db.get(User, session.user_id)
        if user is None:
            raise RefreshRejected("session is not active")
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

    def _active(self, user_id: uuid.UUID, now: dt.datetime):
        return (Session.user_id == user_id, Session.revoked_at.is_(None), Session.expires_at > now)

    def _if_live(self, statement: sa.Select, caller: Caller, now: dt.datetime, **values) -> int:
        """Run one of the _live_only statements; how many sessions it ended.
        Raises SessionEnded, having ended none, when the caller's has ended."""
        found, ended = self.db.execute(
            statement, {"uid": caller.user_id, "sid": caller.session_id, "now": now, **values}
        ).one()
        if not found:
            raise SessionEnded(caller.session_id)
        return ended

    def revoke_all(self, caller: Caller) -> int:
        """Revoke every active session of the caller, its own included; how
        many were active. Raises SessionEnded when the caller's has ended."""
        return self._if_live(_END_ALL, caller, self.clock())

    def active(self, caller: Caller) -> list[Session]:
        """The caller's sessions that can still refresh, newest first. Raises
        SessionEnded when the caller's own is not among them: the query that
        lists them is the check."""
        query = sa.select(Session).where(*self._active(caller.user_id, self.clock()))
        rows = list(self.db.scalars(query.order_by(Session.created_at.desc(), Session.id.desc())))
        if not any(row.id == caller.session_id for row in rows):
            raise SessionEnded(caller.session_id)
        return rows

    def end(self, caller: Caller, session_id: str) -> bool:
        """End one of the caller's active sessions; False when ``session_id``
        names none of them (someone else's, unknown, already ended or not an
        id), so a stranger's session cannot be told from a missing one.
        Raises SessionEnded when the caller's own session has ended: that is
        answered first, whatever ``session_id`` is."""
        try:
            target = uuid.UUID(session_id)
        except ValueError:
            target = None  # id = NULL: ends nothing
        return self._if_live(_END_ONE, caller, self.clock(), target=target) == 1

    def end_others(self, caller: Caller) -> int:
        """End every active session of the caller but its own; how many.
        Raises SessionEnded when the caller's own session has ended."""
        return self._if_live(_END_OTHERS, caller, self.clock())


# Ending sessions on behalf of an access token's session (``sid``) of a user
# (``uid``) at ``now``: one statement each, built once. A CTE finds the
# caller's session if it is still active; the UPDATE (a CTE too) ends
# sessions only if it did; the statement answers both. No round trip more than
# the UPDATE alone. Both parts read one snapshot: of two sessions ending each
# other, the one whose statement starts after the other committed is refused;
# at the same instant, each sees the other live, and both end.
_SESSIONS = Session.__table__


def _active_of_user() -> tuple:
    # Expired sessions are left alone: the counts are of sessions ended now.
    return (
        _SESSIONS.c.user_id == sa.bindparam("uid"),
        _SESSIONS.c.revoked_at.is_(None),
        _SESSIONS.c.expires_at > sa.bindparam("now"),
    )


def _live_only(which, reason: str) -> sa.Select:
    caller = sa.select(_SESSIONS.c.id).where(_SESSIONS.c.id == sa.bindparam("sid"), *_active_of_user()).cte("caller")
    ended = (
        sa.update(_SESSIONS)
        .where(which, *_active_of_user(), sa.exists(caller.select()))
        .values(revoked_at=sa.bindparam("now"), revoked_reason=reason)
        .returning(_SESSIONS.c.id)
        .cte("ended")
    )
    return sa.select(
        sa.select(sa.func.count()).select_from(caller).scalar_subquery(),
        sa.select(sa.func.count()).select_from(ended).scalar_subquery(),
    )


_END_ALL = _live_only(sa.true(), LOGOUT_ALL)
_END_ONE = _live_only(_SESSIONS.c.id == sa.bindparam("target"), ENDED_BY_OWNER)
_END_OTHERS = _live_only(_SESSIONS.c.id != sa.bindparam("sid"), LOGOUT_OTHERS)
