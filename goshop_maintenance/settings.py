"""The maintenance worker's settings: a database, and the retention horizons of
every service whose rules it runs (each service's retention module declares
its own)."""

from __future__ import annotations

import dataclasses

from goshop_common.db.retention import RetentionSettings
from goshop_common.settings import DatabaseSettings
from goshop_orders.retention import OrdersRetentionSettings
from goshop_users.retention import UsersRetentionSettings


@dataclasses.dataclass(frozen=True)
class MaintenanceSettings(DatabaseSettings, UsersRetentionSettings, OrdersRetentionSettings, RetentionSettings):
    """Nothing of its own: the worker runs the rules, the services say what expires."""
