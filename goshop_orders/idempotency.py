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
from sqlalchemy.orm import Session as DbSession

from goshop_orders.models import IdempotencyKey

HEADER = "Idempotency-Key"
# Also the header's pattern in the OpenAPI document (goshop_orders.schemas).
KEY_REGEX = r"[\x21-\x7e]{1,255}"
KEY_RULE = "Idempotency-Key must be 1-255 visible ASCII characters"
_VALID_KEY = re.compile(KEY_REGEX)


class KeyInFlight(Exception):
    pass


class KeyReused(Exception):
    """The key was used with a different request body."""


@dataclasses.dataclass(frozen=True)
class Replay:
    status: int
    body: dict


def valid_key(value: str) -> bool:
    return bool(_VALID_KEY.fullmatch(value))


def request_fingerprint(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyKeys:
    def __init__(self, db: DbSession, clock: Callable[[], dt.datetime], ttl_seconds: int):
        self.db = db
        self.clock = clock
        self.ttl = dt.timedelta(seconds=ttl_seconds)

    def begin(self, user_id: uuid.UUID, key: str, fingerprint: str) -> Replay | None:
        """Claim the key for this transaction. Returns the stored response when
        the key was already used with this request; None when the caller should
        do the work. Raises KeyInFlight or KeyReused."""
        locked = self.db.execute(
            sa.select(sa.func.pg_try_advisory_xact_lock(sa.func.hashtextextended(f"{user_id}:{key}", 0)))
        ).scalar_one()
        if not locked:
            raise KeyInFlight(key)
        row = self.db.get(IdempotencyKey, (user_id, key))
        if row is not None and row.created_at <= self.clock() - self.ttl:
            self.db.delete(row)  # expired: the key may be used afresh
            self.db.flush()
            row = None
        if row is None:
            return None
        if row.request_hash != fingerprint:
            raise KeyReused(key)
        return Replay(row.response_status, row.response_body)

    def complete(self, user_id: uuid.UUID, key: str, fingerprint: str, status: int, body: dict) -> None:
        self.db.add(
            IdempotencyKey(
                user_id=user_id,
                key=key,
                request_hash=fingerprint,
                response_status=status,
                response_body=body,
                created_at=self.clock(),
            )
        )
