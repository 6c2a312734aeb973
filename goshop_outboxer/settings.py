"""The outbox relay's settings."""

from __future__ import annotations

import dataclasses

from goshop_common.settings import BrokerSettings, DatabaseSettings, positive_int, schema_list, setting


@dataclasses.dataclass(frozen=True)
class OutboxerSettings(DatabaseSettings, BrokerSettings):
    # It relays the outbox table of each schema named here (every service with
    # an outbox has one, made by create_outbox_v1), so a new producing service
    # is a setting, not a code change in the outboxer.
    outbox_schemas: tuple[str, ...] = setting("GOSHOP_OUTBOX_SCHEMAS", schema_list, ("orders", "payments"))
    outbox_batch_size: int = setting("GOSHOP_OUTBOX_BATCH_SIZE", positive_int, 100)
    outbox_poll_seconds: int = setting("GOSHOP_OUTBOX_POLL_SECONDS", positive_int, 5)
    outbox_backoff_base_ms: int = setting("GOSHOP_OUTBOX_BACKOFF_BASE_MS", positive_int, 500)
    outbox_backoff_cap_seconds: int = setting("GOSHOP_OUTBOX_BACKOFF_CAP_SECONDS", positive_int, 60)
