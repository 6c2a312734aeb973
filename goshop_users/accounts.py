"""Registering accounts and checking passwords."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

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

    def authenticate(self, email: str, password: str) -> User | None:
        """The user whose password this is, or None. Costs one argon2
        verification either way, so a miss does not reveal whether the email
        has an account."""
        user = self.db.scalar(sa.select(User).where(User.email == email))
        # verify first, whatever user is: its cost is the point.
        if not self.passwords.verify(user.password_hash if user else None, password) or user is None:
            return None
        # Only now is the password known: a hash made with older parameters
        # is upgraded as the user logs in.
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = self.passwords.hash(password)
        return user
