"""What the maintenance worker may delete from the payments schema, and when
(goshop_common.db.retention): the one module of payments that
goshop_maintenance imports (.importlinter allows it and nothing else).

- Published outbox rows older than ``GOSHOP_RETENTION_OUTBOX_SECONDS``; never
  a pending one.
- Inbox rows older than the dedupe horizon, ``GOSHOP_RETENTION_INBOX_SECONDS``.

Payments themselves are kept: they are the record of every charge.
"""

from __future__ import annotations

import datetime as dt

from goshop_common.db.retention import RetentionSettings, Rule
from goshop_common.messaging import inbox, outbox
from goshop_payments.models import INBOX, OUTBOX


def rules(settings: RetentionSettings) -> list[Rule]:
    return [
        outbox.retention_rule(OUTBOX, dt.timedelta(seconds=settings.retention_outbox)),
        inbox.retention_rule(INBOX, dt.timedelta(seconds=settings.retention_inbox)),
    ]
