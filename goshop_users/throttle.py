"""Throttling failed logins, per (email, client), per client and per email.

Counters live in Postgres so every replica of users sees the same ones. Each
key counts failures in a fixed window that starts at its first failure:

- ``pair``: one client guessing one email's password; the tight limit (5).
- ``client``: one client guessing across emails (50).
- ``email``: every client together guessing one email (100), the ceiling on
  a distributed run. Reaching it throttles the email for everyone, its owner
  too: that is the price of stopping a botnet, and it is set high so a few
  noisy clients cannot pay it for the owner.

A storm of wrong guesses at one email from other clients fills their pair and
client keys, not the owner's: the owner's right password from a clean client
still logs in until the ceiling.

Counting is atomic. Before the password is verified the attempt is reserved:
one short transaction of its own increments every key (upsert ... RETURNING,
in a fixed order so two reservations cannot deadlock) and commits only when
every key is within its limit. N concurrent wrong passwords thus get exactly
the limit's worth of verifications, never more, and no row lock is held
across argon2's verification. A refused attempt rolls back and changes nothing.
A wrong password leaves its reservation standing as the failure; a right one
forgets the pair and gives the reservation back on the others.

The throttle's transactions are its own, not the request's: they run on the
engine. A test that hands the request its own session (``environ[
"goshop.dbsession"]``, goshop_common.db.session) on a connection it rolls back
has them run on that connection instead (goshop_common.db.session.request_bind
and own_transaction), each one a savepoint of its own, so
that a reservation still outlives the request's rollback and the test's
rollback still undoes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from goshop_common.db.session import own_transaction
from goshop_users.models import LoginFailure

# A client without an address (never over TCP) shares one budget rather than
# escaping the per-client and per-pair limits.
UNKNOWN_CLIENT = "unknown"


def _email_digest(email: str) -> str:
    # Keys hold a digest, not the address: a long or multibyte email cannot
    # overflow the primary key's btree, and the table does not list who was
    # guessed at.
    return hashlib.sha256(email.encode()).hexdigest()


def pair_key(email: str, client: str) -> str:
    return f"pair:{_email_digest(email)}:{client}"


def client_key(client: str) -> str:
    return f"client:{client}"


def email_key(email: str) -> str:
    return f"email:{_email_digest(email)}"


class Throttled(Exception):
    """The attempt is refused; ``retry_after`` is in whole seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True)
class Reservation:
    """An attempt counted in advance: ``windows`` maps each key to the start of
    the window it was counted in, so giving it back touches only that window."""

    pair: str
    windows: dict[str, dt.datetime]


class LoginThrottle:
    def __init__(
        self,
        engine: sa.Engine | sa.Connection,
        max_per_email_and_client: int,
        max_per_client: int,
        max_per_email: int,
        window_seconds: int,
        clock: Callable[[], dt.datetime],
    ):
        self.engine = engine
        self.max_per_email_and_client = max_per_email_and_client
        self.max_per_client = max_per_client
        self.max_per_email = max_per_email
        self.window = dt.timedelta(seconds=window_seconds)
        self.clock = clock

    def _limits(self, email: str, client: str) -> list[tuple[str, int]]:
        # The order is the lock order of every transaction on these rows.
        return [
            (pair_key(email, client), self.max_per_email_and_client),
            (client_key(client), self.max_per_client),
            (email_key(email), self.max_per_email),
        ]

    def reserve(self, email: str, client: str | None) -> Reservation:
        """Count an attempt for ``email`` from ``client`` before its password is
        checked. Raises Throttled, having changed nothing, when any key would go
        over its limit; Retry-After is when the last such key's window ends."""
        client = client or UNKNOWN_CLIENT
        now = self.clock()
        table = LoginFailure.__table__
        window_open = table.c.window_started_at + self.window > now
        windows: dict[str, dt.datetime] = {}
        waits: list[float] = []
        # Raising Throttled in the block rolls the reservations back.
        with own_transaction(self.engine) as connection:
            for key, limit in self._limits(email, client):
                statement = (
                    insert(table)
                    .values(key=key, failures=1, window_started_at=now)
                    .on_conflict_do_update(
                        index_elements=[table.c.key],
                        set_={
                            "failures": sa.case((window_open, table.c.failures + 1), else_=1),
                            "window_started_at": sa.case((window_open, table.c.window_started_at), else_=now),
                        },
                    )
                    .returning(table.c.failures, table.c.window_started_at)
                )
                failures, started = connection.execute(statement).one()
                windows[key] = started
                if failures > limit:
                    waits.append((started + self.window - now).total_seconds())
            if waits:
                raise Throttled(max(1, math.ceil(max(waits))))
        return Reservation(pair=pair_key(email, client), windows=windows)

    def succeeded(self, reservation: Reservation) -> None:
        """The password was right: forget the pair's failures and give the
        reserved attempt back to the client and email keys (in their window
        only; one that has restarted since does not hold it)."""
        table = LoginFailure.__table__
        with own_transaction(self.engine) as connection:
            for key, started in reservation.windows.items():
                if key == reservation.pair:
                    connection.execute(sa.delete(table).where(table.c.key == key))
                    continue
                connection.execute(
                    sa.update(table)
                    .where(table.c.key == key, table.c.window_started_at == started, table.c.failures > 0)
                    .values(failures=table.c.failures - 1)
                )
