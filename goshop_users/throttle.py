"""Throttling failed logins per email and per client address.

Counters live in Postgres so every replica of users sees the same ones. A key
that reaches its limit inside the window is refused until the window ends,
even with the right password: that is what stops a guessing run.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session as DbSession

from goshop_users.models import LoginFailure


def email_key(email: str) -> str:
    return f"email:{email}"


def ip_key(address: str) -> str:
    return f"ip:{address}"


class LoginThrottle:
    def __init__(
        self,
        db: DbSession,
        max_per_email: int,
        max_per_ip: int,
        window_seconds: int,
        clock: Callable[[], dt.datetime],
    ):
        self.db = db
        self.limits = {"email": max_per_email, "ip": max_per_ip}
        self.window = dt.timedelta(seconds=window_seconds)
        self.clock = clock

    def _keys(self, email: str, address: str | None) -> list[str]:
        keys = [email_key(email)]
        if address:
            keys.append(ip_key(address))
        return keys

    def retry_after(self, email: str, address: str | None) -> int | None:
        """Seconds until a login for this email from this address is allowed
        again, or None when it is allowed now."""
        now = self.clock()
        rows = self.db.scalars(sa.select(LoginFailure).where(LoginFailure.key.in_(self._keys(email, address))))
        wait = 0.0
        for row in rows:
            limit = self.limits[row.key.partition(":")[0]]
            ends = row.window_started_at + self.window
            if row.failures >= limit and ends > now:
                wait = max(wait, (ends - now).total_seconds())
        return math.ceil(wait) if wait > 0 else None

    def record_failure(self, email: str, address: str | None) -> None:
        now = self.clock()
        table = LoginFailure.__table__
        window_open = table.c.window_started_at + self.window > now
        for key in self._keys(email, address):
            statement = insert(table).values(key=key, failures=1, window_started_at=now)
            statement = statement.on_conflict_do_update(
                index_elements=[table.c.key],
                set_={
                    "failures": sa.case((window_open, table.c.failures + 1), else_=1),
                    "window_started_at": sa.case((window_open, table.c.window_started_at), else_=now),
                },
            )
            self.db.execute(statement)

    def clear(self, email: str) -> None:
        """A successful login forgets the email's failures (not the address's)."""
        self.db.execute(sa.delete(LoginFailure).where(LoginFailure.key == email_key(email)))
