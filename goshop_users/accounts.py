"""Registering accounts and checking passwords."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from goshop_common.db.session import own_transaction
from goshop_users.models import User
from goshop_users.passwords import Passwords


class EmailTaken(Exception):
    """The email already has an account (the unique constraint said so)."""


class Accounts:
    """Registration and password checks. Writes through ``db`` and never
    commits: the request's transaction does."""

    def __init__(self, db: DbSession, passwords: Passwords, clock: Callable[[], dt.datetime]):
        self.db = db
        self.passwords = passwords
        self.clock = clock

    def register(self, email: str, password: str) -> User:
        """Create an account; ``email`` is already normalised. Raises EmailTaken."""
        # Hash before touching the database: argon2's CPU holds no lock.
        user = User(email=email, password_hash=self.passwords.hash(password), created_at=self.clock())
        try:
            # Two registrations of one email can both pass any SELECT; the unique
            # constraint decides, and the savepoint keeps the transaction usable.
            with self.db.begin_nested():
                self.db.add(user)
        except IntegrityError:
            raise EmailTaken(email) from None
        return user

    def authenticate(self, email: str, password: str, bind: sa.Engine | sa.Connection) -> User | None:
        """The user whose password this is, or None. Costs one argon2
        verification either way, so a miss does not reveal whether the email
        has an account.

        The account is read in a short transaction of its own on ``bind``
        (goshop_common.db.session.request_bind), given back before the
        verification: argon2's tens of milliseconds hold no connection, so
        logins arriving together do not each keep one of the pool's open
        and idle (a soak's pool grew to its cap at every burst of logins);
        only a verified user is read again, into the request's session."""
        with own_transaction(bind) as connection:
            found = connection.execute(sa.select(User.id, User.password_hash).where(User.email == email)).first()
        # verify first, whatever found is: its cost is the point.
        if not self.passwords.verify(found.password_hash if found else None, password) or found is None:
            return None
        user = self.db.get(User, found.id)
        if user is None:  # deleted in between
            return None
        # Only now is the password known: a hash made with older parameters
        # is upgraded as the user logs in.
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = self.passwords.hash(password)
        return user
