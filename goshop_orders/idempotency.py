"""Idempotency-Key for POST /v1/orders (IETF httpapi idempotency-key draft).

The same key with the same body replays the first response; the same key with
another body is 422; a request whose key is still being processed is 409. The
key row is written in the order's transaction, so two replicas cannot create
two orders for one key: a transaction-scoped advisory lock tells a concurrent
duplicate to back off, and the primary key catches anything that slips by.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Callable

import sqlalchemy as sa

from goshop_orders.models import IdempotencyKey

HEADER = "Idempotency-Key"
# Also the header's pattern in the OpenAPI document (goshop_orders.schemas).
KEY_REGEX = r"[\x21-\x7e]{1,255}"
KEY_RULE = "Idempotency-Key must be 1-255 visible ASCII characters"
_VALID_KEY = re.compile(KEY_REGEX)


class KeyInFlight(Exception):
    """Another transaction holds the key: a request with it has not finished (409)."""


class KeyReused(Exception):
    """The key was used with a different request body."""


@dataclasses.dataclass(frozen=True)
class Replay:
    """The first answer given for a key, to be sent again as it was."""

    status: int
    body: dict


def valid_key(value: str) -> bool:
    return bool(_VALID_KEY.fullmatch(value))


def request_fingerprint(body: dict) -> str:
    """A digest of ``body`` as canonical JSON (sorted keys, no spaces): the
    same fields in another order are the same request. The caller passes the
    validated fields, so a lower-case currency matches its upper-case twin."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


_KEYS = IdempotencyKey.__table__
_THIS_KEY = (_KEYS.c.user_id == sa.bindparam("user_id"), _KEYS.c.key == sa.bindparam("key"))
# Core statements, built once, their values bound at execute time.
_TRY_LOCK = sa.select(sa.func.pg_try_advisory_xact_lock(sa.func.hashtextextended(sa.bindparam("lock_key"), 0)))
_FIND = sa.select(_KEYS.c.request_hash, _KEYS.c.response_status, _KEYS.c.response_body, _KEYS.c.created_at).where(
    *_THIS_KEY
)
_FORGET = _KEYS.delete().where(*_THIS_KEY)
_KEEP = _KEYS.insert()


class IdempotencyKeys:
    """The Idempotency-Key rows of the orders schema: ``begin`` before an
    order is created, ``complete`` after, both in the order's transaction
    (``db``: its Connection, or a Session). A key is kept ``ttl_seconds``
    from its first use."""

    def __init__(self, db: sa.Connection | sa.orm.Session, clock: Callable[[], dt.datetime], ttl_seconds: int):
        self.db = db
        self.clock = clock
        self.ttl = dt.timedelta(seconds=ttl_seconds)

    def begin(self, user_id: uuid.UUID, key: str, fingerprint: str) -> Replay | None:
        """Claim the key for this transaction. Returns the stored response when
        the key was already used with this request; None when the caller should
        do the work. Raises KeyInFlight or KeyReused."""
        # Try, never wait: a concurrent duplicate is told 409 at once. The lock
        # is the transaction's, so it goes with the commit or rollback. Two keys
        # whose 64-bit hashes collide can only cost each other a spurious 409.
        locked = self.db.execute(_TRY_LOCK, {"lock_key": f"{user_id}:{key}"}).scalar_one()
        if not locked:
            raise KeyInFlight(key)
        row = self.db.execute(_FIND, {"user_id": user_id, "key": key}).first()
        if row is not None and row.created_at <= self.clock() - self.ttl:
            # Expired: the key may be used afresh. Deleted now, before
            # complete() inserts a row with the same primary key.
            self.db.execute(_FORGET, {"user_id": user_id, "key": key})
            row = None
        if row is None:
            return None
        if row.request_hash != fingerprint:
            raise KeyReused(key)
        return Replay(row.response_status, row.response_body)

    def complete(self, user_id: uuid.UUID, key: str, fingerprint: str, status: int, body: dict) -> None:
        """Keep the answer for the key. In the order's transaction: if that rolls
        back, there is neither an order nor a key, and a retry starts afresh."""
        self.db.execute(
            _KEEP,
            {
                "user_id": user_id,
                "key": key,
                "request_hash": fingerprint,
                "response_status": status,
                "response_body": body,
                "created_at": self.clock(),
            },
        )
