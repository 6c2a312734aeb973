"""Password hashing with argon2id, and a login check that costs the same
whether or not the account exists."""

from __future__ import annotations

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    """argon2id hashing with the settings' cost parameters. ``verify`` costs
    one full verification whether or not there is a hash to check."""

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int):
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=argon2.Type.ID
        )
        # Verified against when the email is unknown, so that a miss takes as
        # long as a wrong password and timing does not reveal who has an account.
        self._dummy_hash = self._hasher.hash("goshop-timing-equaliser")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches ``password_hash``; always False without
        a hash, even for the dummy's own password."""
        # A stored hash that is not argon2's fails closed (InvalidHashError).
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and password_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than today's."""
        return self._hasher.check_needs_rehash(password_hash)
