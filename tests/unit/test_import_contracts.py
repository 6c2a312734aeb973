"""The import contracts (.importlinter) cover every package, and catch what
they exist to forbid. ``make test`` runs ``lint-imports`` on the tree itself;
these tests keep the contracts from silently going blind."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = {"goshop_common", "goshop_domain", "goshop_devtools"}


def contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    return parser


def listed(section: str, option: str) -> set[str]:
    return set(contracts()[section][option].split())


def packages() -> set[str]:
    return {path.parent.name for path in ROOT.glob("goshop_*/__init__.py")}


def test_every_goshop_package_is_under_the_contracts():
    assert listed("importlinter", "root_packages") == packages()


def test_every_service_is_independent_of_the_others_and_of_the_dev_tooling():
    services = packages() - SHARED
    assert listed("importlinter:contract:services", "modules") == services
    kernel_forbidden = services | {"goshop_domain", "goshop_devtools"}
    assert listed("importlinter:contract:common", "forbidden_modules") == kernel_forbidden
    assert listed("importlinter:contract:domain", "forbidden_modules") == services | {"goshop_devtools"}
    assert listed("importlinter:contract:runtime", "source_modules") == services


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    command = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(command), "--config", str(ROOT / ".importlinter"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path) -> Path:
    """A copy of the goshop packages, to break on purpose."""
    for package in packages():
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize(
    ("module", "forbidden", "contract"),
    [
        ("goshop_orders/orders.py", "goshop_payments.models", "No service imports another"),
        ("goshop_ops/timeline.py", "goshop_orders.models", "No service imports another"),
        ("goshop_common/messaging/outbox.py", "goshop_orders.models", "goshop_common imports no domain, no service"),
        ("goshop_common/messaging/consumer.py", "goshop_domain.events", "goshop_common imports no domain, no service"),
        ("goshop_domain/events.py", "goshop_orders.models", "goshop_domain imports no service"),
        ("goshop_users/views.py", "goshop_devtools.postgres", "No service imports the dev tooling"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tree, module, forbidden, contract):
    with (tree / module).open("a") as source:
        source.write(f"\nimport {forbidden}  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if " BROKEN" in line]
    assert any(line.startswith(contract) for line in broken), result.stdout


def test_the_copied_tree_keeps_every_contract(tree):
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
