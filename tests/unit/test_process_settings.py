"""A process's settings object has no field the process does not use, and a
process reads no setting its settings do not declare (goshop_devtools.settings
lists the processes; each declares its class where it lives)."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from goshop_common.settings import BaseSettings
from goshop_devtools.settings import PROCESSES

ROOT = Path(__file__).resolve().parents[2]
# What a process runs besides the kernel: the packages whose code reads its settings.
PROCESS_PACKAGES = {
    "users": ("goshop_users",),
    "orders": ("goshop_orders",),
    "orders-consumer": ("goshop_orders",),
    "payments": ("goshop_payments",),
    "payments-consumer": ("goshop_payments",),
    "gateway": ("goshop_gateway",),
    "ops": ("goshop_ops",),
    "outboxer": ("goshop_outboxer",),
    # The maintenance worker runs each service's published retention rules.
    "maintenance": ("goshop_maintenance", "goshop_users", "goshop_orders", "goshop_payments"),
    "migrate": (),
    "db-roles": (),
}
SHARED = ("goshop_common", "goshop_domain")


def read_by_name() -> dict[str, set[str]]:
    """Fields read with getattr, by a name the code builds."""
    from goshop_common.db.roles import PASSWORD_SETTINGS
    from goshop_gateway.routes import UPSTREAMS

    return {"gateway": {f"{name}_url" for name in UPSTREAMS}, "db-roles": set(PASSWORD_SETTINGS.values())}


SERVICES = sorted({package for packages in PROCESS_PACKAGES.values() for package in packages})


def sources(*packages: str) -> str:
    return "\n".join(path.read_text() for package in packages for path in sorted((ROOT / package).rglob("*.py")))


def declared_in(cls: type, name: str) -> str:
    """The top package of the class that declares field ``name`` of ``cls``."""
    for base in reversed(cls.__mro__):
        if name in getattr(base, "__annotations__", {}) and dataclasses.is_dataclass(base):
            return base.__module__.split(".")[0]
    raise AssertionError(f"{name} of {cls.__name__} is declared nowhere")


def test_every_process_is_listed():
    assert set(PROCESS_PACKAGES) == set(PROCESSES)


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_every_setting_of_a_process_is_read_by_the_code_it_runs(process):
    cls = PROCESSES[process]
    own = sources(*PROCESS_PACKAGES[process])
    shared = sources(*SHARED)
    by_name = read_by_name().get(process, set())
    unread = []
    for field in dataclasses.fields(cls):
        read = re.compile(rf"\.{field.name}\b")
        # A process's own field is read by the process's own code; a field of
        # a kernel or domain group by the kernel or domain, or by the process.
        code = own + shared if declared_in(cls, field.name) in SHARED else own
        # Or read from the environment directly, by its variable (the broker profile).
        env = field.metadata["env"]
        if field.name not in by_name and not read.search(code) and f'"{env}"' not in code:
            unread.append(field.name)
    assert not unread, f"{process}'s settings carry fields nothing it runs reads: {unread}"


def settings_classes(package: str) -> set[type]:
    classes = set()
    for path in (ROOT / package).rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if "migrations" in module:
            continue
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, type) and issubclass(value, BaseSettings):
                classes.add(value)
    return classes


@pytest.mark.parametrize("package", SERVICES)
def test_a_service_reads_only_settings_its_own_classes_declare(package):
    declared = {"production", "check"}
    for cls in settings_classes(package):
        declared |= {field.name for field in dataclasses.fields(cls)}
    read = set(re.findall(r"\bsettings\.(\w+)", sources(package)))
    assert read <= declared, f"{package} reads settings no class of its declares: {sorted(read - declared)}"
