"""Every service's retention rules, read through the one module each service
publishes for the maintenance worker: the exception ``.importlinter`` makes
to "no service imports another"."""

from __future__ import annotations

from goshop_common.db.retention import Rule
from goshop_maintenance.settings import MaintenanceSettings
from goshop_orders import retention as orders_retention
from goshop_payments import retention as payments_retention
from goshop_users import retention as users_retention


def every_rule(settings: MaintenanceSettings) -> list[Rule]:
    """In the order a pass runs them."""
    return [*users_retention.rules(settings), *orders_retention.rules(settings), *payments_retention.rules(settings)]
