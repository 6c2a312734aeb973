"""Production refuses every secret value the repository holds.

The repository is scanned for what looks like a committed secret (an ops
token, a JWT secret, a database password in a URL or a compose file), and each
value found must be refused by ``load_settings`` in production. A new value
committed somewhere without being added to ``REPOSITORY_SECRETS`` fails here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from goshop_common.settings import SettingsError
from goshop_devtools.settings import settings_of

ROOT = Path(__file__).resolve().parents[3]
TOKEN = re.compile(r"""(GOSHOP_OPS_TOKEN|GOSHOP_JWT_SECRET)["']?\s*[:=]\s*["']?([A-Za-z0-9_\-.]{8,})""")
URL_PASSWORD = re.compile(r"postgres(?:ql)?(?:\+\w+)?://[^:/@\s]+:([^@\s/]+)@")
PASSWORD = re.compile(r"""POSTGRES_PASSWORD["']?\s*[:=]\s*["']?([^"'\s]+)""")
PRODUCTION = {"GOSHOP_ENV": "production", "GOSHOP_DATABASE_URL": "postgresql://shop:vault-value@db/goshop"}
BROKER = {"GOSHOP_KAFKA_BOOTSTRAP": "kafka:9092"}


def _committed_text() -> dict[str, str]:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()  # noqa: S607 (git from PATH, as developers run it)
    texts = {}
    for name in files:
        if name.startswith("tests/") or not name.endswith((".py", ".yaml", ".yml", ".ini", ".md", "Tiltfile", ".env")):
            continue
        texts[name] = (ROOT / name).read_text(errors="replace")
    return texts


def _found(pattern: re.Pattern, group: int) -> set[str]:
    values = set()
    for text in _committed_text().values():
        values |= {match.group(group) for match in pattern.finditer(text)}
    # Placeholders and variables are not values.
    return {value for value in values if not value.startswith(("$", "<", "{")) and "..." not in value}


def test_the_scan_finds_the_committed_development_secrets():
    # Guards the patterns themselves: they must find what we know is there.
    assert "dev-only-ops-token-for-kind-do-not-use-in-production" in _found(TOKEN, 2)
    assert "goshop" in _found(URL_PASSWORD, 1)


@pytest.mark.parametrize("value", sorted(_found(TOKEN, 2)))
def test_production_refuses_each_committed_token(value):
    with pytest.raises(SettingsError, match="GOSHOP_OPS_TOKEN"):
        settings_of({}, environ={**PRODUCTION, **BROKER, "GOSHOP_OPS_TOKEN": value}, service="ops")
    with pytest.raises(SettingsError, match="GOSHOP_JWT_SECRET"):
        settings_of(
            {}, environ={**PRODUCTION, "GOSHOP_JWT_ALGORITHM": "HS256", "GOSHOP_JWT_SECRET": value}, service="users"
        )


@pytest.mark.parametrize("password", sorted(_found(URL_PASSWORD, 1) | _found(PASSWORD, 1)))
def test_production_refuses_each_committed_database_password(password):
    url = f"postgresql://goshop:{password}@db.internal:5432/goshop"
    with pytest.raises(SettingsError, match="GOSHOP_DATABASE_URL"):
        settings_of({}, environ={**PRODUCTION, "GOSHOP_DATABASE_URL": url}, service="orders")
