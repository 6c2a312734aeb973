"""What the maintenance worker may delete from the users schema, and when
(goshop_common.db.retention): the one module of users that goshop_maintenance
imports (.importlinter allows it and nothing else).

- Login-failure counters whose window is over: the throttle restarts the
  count at the next failure anyway (goshop_users.throttle), so a counter past
  its window counts nothing. The same setting decides both.
- Sessions that ended — expired, or revoked (logout, theft detection) — more
  than ``GOSHOP_RETENTION_SESSIONS_SECONDS`` ago. An ended session refreshes
  nothing and is not listed; it is kept a while for whoever investigates a
  reused token. Its refresh tokens answer ``401 invalid token`` with or
  without the row. Active sessions are never deleted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa

from goshop_common.db.retention import RetentionSettings, Rule
from goshop_common.settings import BaseSettings, positive_int, setting
from goshop_users.models import LoginFailure, Session


@dataclasses.dataclass(frozen=True)
class LoginFailureWindow(BaseSettings):
    """How long a login-failure counter counts: users' throttle reads it, and
    the maintenance worker deletes a counter once its window is over."""

    login_failure_window: int = setting("GOSHOP_LOGIN_FAILURE_WINDOW_SECONDS", positive_int, 900)


@dataclasses.dataclass(frozen=True)
class UsersRetentionSettings(RetentionSettings, LoginFailureWindow):
    """What ``rules`` reads (the maintenance worker's settings compose it)."""

    # Sessions ended (expired or revoked) this long ago.
    retention_sessions: int = setting("GOSHOP_RETENTION_SESSIONS_SECONDS", positive_int, 30 * 24 * 3600)


def ended_sessions(keep: dt.timedelta) -> Rule:
    table = Session.__table__
    # Either end counts: a session revoked long ago but issued for 30 days
    # more is over as surely as one that ran out. Each side has its index.
    return Rule(table, keep, lambda cutoff: sa.or_(table.c.expires_at <= cutoff, table.c.revoked_at <= cutoff))


def finished_login_failure_windows(window: dt.timedelta) -> Rule:
    table = LoginFailure.__table__
    # The throttle's window is open while window_started_at + window > now.
    return Rule(table, window, lambda cutoff: table.c.window_started_at <= cutoff)


def rules(settings: UsersRetentionSettings) -> list[Rule]:
    return [
        finished_login_failure_windows(dt.timedelta(seconds=settings.login_failure_window)),
        ended_sessions(dt.timedelta(seconds=settings.retention_sessions)),
    ]
