"""The goshop wheel: built without setuptools' warnings, and carrying what the
services read at run time besides their modules (inis, Alembic's template,
every revision)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIGRATING = ("goshop_users", "goshop_orders", "goshop_payments")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[str, set[str]]:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    [path] = out.glob("goshop-*.whl")
    with zipfile.ZipFile(path) as archive:
        return build.stdout + build.stderr, set(archive.namelist())


def test_building_the_wheel_warns_about_no_undeclared_package(wheel):
    output, _ = wheel
    assert "is absent from the `packages` configuration" not in output
    assert "SetuptoolsDeprecationWarning" not in output


@pytest.mark.parametrize("package", MIGRATING)
def test_the_wheel_carries_each_services_inis_template_and_revisions(wheel, package):
    _, names = wheel
    for name in ("alembic.ini", "development.ini", "production.ini", "migrate.py", "migrations/env.py"):
        assert f"{package}/{name}" in names
    assert f"{package}/migrations/script.py.mako" in names
    revisions = sorted(p.name for p in (ROOT / package / "migrations" / "versions").glob("*.py"))
    assert revisions
    assert {f"{package}/migrations/versions/{name}" for name in revisions} <= names


def test_the_wheel_carries_no_bytecode_caches(wheel):
    _, names = wheel
    assert not [name for name in names if "__pycache__" in name]
