"""What the maintenance worker may delete from the orders schema, and when
(goshop_common.db.retention): the one module of orders that goshop_maintenance
imports (.importlinter allows it and nothing else).

- Idempotency keys older than ``GOSHOP_IDEMPOTENCY_KEY_TTL_SECONDS``: orders
  no longer replays them (goshop_orders.idempotency treats such a key as new).
- Published outbox rows older than ``GOSHOP_RETENTION_OUTBOX_SECONDS``; never
  a pending one.
- Inbox rows older than the dedupe horizon, ``GOSHOP_RETENTION_INBOX_SECONDS``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from goshop_common.db.retention import RetentionSettings, Rule
from goshop_common.messaging import inbox, outbox
from goshop_common.settings import BaseSettings, positive_int, setting
from goshop_orders.models import INBOX, OUTBOX, IdempotencyKey


@dataclasses.dataclass(frozen=True)
class IdempotencyKeyTtl(BaseSettings):
    """How long orders replays an idempotency key; the maintenance worker
    deletes a key once orders would no longer replay it."""

    idempotency_key_ttl: int = setting("GOSHOP_IDEMPOTENCY_KEY_TTL_SECONDS", positive_int, 24 * 3600)


@dataclasses.dataclass(frozen=True)
class OrdersRetentionSettings(RetentionSettings, IdempotencyKeyTtl):
    """What ``rules`` reads (the maintenance worker's settings compose it)."""


def expired_idempotency_keys(ttl: dt.timedelta) -> Rule:
    table = IdempotencyKey.__table__
    # As IdempotencyKeys.begin decides: expired once created_at <= now - ttl.
    return Rule(table, ttl, lambda cutoff: table.c.created_at <= cutoff)


def rules(settings: OrdersRetentionSettings) -> list[Rule]:
    return [
        expired_idempotency_keys(dt.timedelta(seconds=settings.idempotency_key_ttl)),
        outbox.retention_rule(OUTBOX, dt.timedelta(seconds=settings.retention_outbox)),
        inbox.retention_rule(INBOX, dt.timedelta(seconds=settings.retention_inbox)),
    ]
