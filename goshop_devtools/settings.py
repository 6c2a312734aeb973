"""Every process's settings, seen together: for the generated table in
docs/operations.md (``python -m goshop_devtools.settings``), the tests and the
dev tools. Each process declares its own settings class where it lives; the
kernel (goshop_common.settings) knows none of them, so the list is here."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from goshop_common.db.roles import RolesSettings
from goshop_common.settings import BaseSettings, DatabaseSettings, Spec, load_settings, specs
from goshop_gateway.settings import GatewaySettings
from goshop_maintenance.settings import MaintenanceSettings
from goshop_ops.settings import OpsSettings
from goshop_orders.settings import OrdersConsumerSettings, OrdersSettings
from goshop_outboxer.settings import OutboxerSettings
from goshop_payments.settings import PaymentsConsumerSettings, PaymentsSettings
from goshop_users.settings import UsersSettings

# The processes of the shop, as their entry points name them, and the class
# of each one's settings.
PROCESSES: dict[str, type[BaseSettings]] = {
    "users": UsersSettings,
    "orders": OrdersSettings,
    "payments": PaymentsSettings,
    "gateway": GatewaySettings,
    "ops": OpsSettings,
    "outboxer": OutboxerSettings,
    "orders-consumer": OrdersConsumerSettings,
    "payments-consumer": PaymentsConsumerSettings,
    # goshop_common.db.migrate: a database, nothing else.
    "migrate": DatabaseSettings,
    "maintenance": MaintenanceSettings,
    # Creates the database roles, as an administrator (goshop_common.db.roles).
    "db-roles": RolesSettings,
}


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    """One setting and the processes whose settings have it."""

    spec: Spec
    processes: tuple[str, ...]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.spec, name)

    @property
    def services(self) -> frozenset[str]:
        return frozenset(self.processes)


def _merged() -> tuple[ProcessSpec, ...]:
    """Every setting once, by variable. A variable declared by two classes
    (a service's field and its twin in another) must be declared alike."""
    by_env: dict[str, Spec] = {}
    users: dict[str, list[str]] = {}
    for process, cls in PROCESSES.items():
        for spec in specs(cls):
            known = by_env.setdefault(spec.env, spec)
            if known != spec:
                raise AssertionError(f"{spec.env} is declared twice, differently: {known} and {spec}")
            users.setdefault(spec.env, []).append(process)
    return tuple(ProcessSpec(spec, tuple(users[env])) for env, spec in by_env.items())


SPECS: tuple[ProcessSpec, ...] = _merged()


def specs_for(process: str) -> tuple[Spec, ...]:
    return specs(PROCESSES[process])


def _every_settings_class() -> type:
    bases: list[type] = []
    for cls in PROCESSES.values():
        if cls not in bases and not any(issubclass(base, cls) for base in bases):
            bases = [base for base in bases if not issubclass(cls, base)] + [cls]
    return dataclasses.make_dataclass("AllSettings", [], bases=tuple(bases), frozen=True)


# Every process's settings in one object: for tests that hand one settings
# object to several apps and workers (a process never loads it).
AllSettings = _every_settings_class()


def settings_of(
    ini: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None, *, service: str | None = None
) -> Any:
    """``service``'s settings (a process name of PROCESSES), or every
    process's (AllSettings) for ``None``."""
    cls = AllSettings if service is None else PROCESSES[service]
    return load_settings(cls, ini, environ)


def markdown_table() -> str:
    """Every setting as a Markdown table (the "Settings" section of
    docs/operations.md is this output; a test keeps the two equal)."""
    rows = ["| env | default | used by | production |", "|---|---|---|---|"]
    for item in SPECS:
        spec = item.spec
        if isinstance(spec.default, tuple):
            default = ",".join(spec.default) or "none"
        else:
            default = str(spec.default) if spec.default != "" else "unset"
        if spec.secret:
            default = f"{default} (development only)"
        used_by = ", ".join(item.processes)
        if set(item.processes) == set(PROCESSES):
            used_by = "all"
        production = "**required**" if spec.required_in_production else ""
        if spec.secret:
            production = " ".join(filter(None, [production, "secret; repository values refused"]))
        production = "; ".join(filter(None, [production, spec.production_note]))
        rows.append(f"| `{spec.env}` | `{default}` | {used_by} | {production} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
