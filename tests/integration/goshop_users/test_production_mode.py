import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from goshop_common.settings import SettingsError
from goshop_devtools.postgres import free_port
from goshop_devtools.settings import settings_of
from goshop_users import make_app
from goshop_users.keys import dev_key_path
from tests.support import write_signing_key

ROOT = Path(__file__).resolve().parents[3]


def production_url(database_url: str) -> str:
    # A password of its own: production refuses the repository's.
    return database_url.replace("goshop:goshop@", "goshop:not-the-dev-password@")


def production_users(database_url: str, **environ):
    return settings_of(
        {},
        environ={"GOSHOP_ENV": "production", "GOSHOP_DATABASE_URL": production_url(database_url), **environ},
        service="users",
    )


def test_production_refuses_to_start_without_a_signing_key_of_its_own(database_url):
    with pytest.raises(SettingsError, match="GOSHOP_JWT_PRIVATE_KEY_FILE is required in production"):
        make_app(production_users(database_url))


def test_production_refuses_a_key_file_that_does_not_exist(database_url, tmp_path):
    with pytest.raises(SettingsError, match="no such file"):
        make_app(production_users(database_url, GOSHOP_JWT_PRIVATE_KEY_FILE=str(tmp_path / "missing.pem")))


def test_production_starts_with_a_provided_key(database_url, tmp_path):
    key_file = write_signing_key(tmp_path / "jwt.pem")
    app = make_app(production_users(database_url, GOSHOP_JWT_PRIVATE_KEY_FILE=str(key_file)))
    assert not app.registry.signing_key.kid.startswith("dev-")


# The development key: the one the test session's users app generated and signs with.


@pytest.fixture
def dev_key(settings, users_app):
    path = dev_key_path(settings)
    assert users_app.registry.signing_key.kid.startswith("dev-")
    assert path.exists()
    return path


def test_production_refuses_the_development_key_at_its_own_path(database_url, settings, dev_key):
    with pytest.raises(SettingsError) as refused:
        make_app(
            production_users(database_url, GOSHOP_DEV_DIR=settings.dev_dir, GOSHOP_JWT_PRIVATE_KEY_FILE=str(dev_key))
        )
    message = str(refused.value)
    assert message.startswith(f"GOSHOP_JWT_PRIVATE_KEY_FILE: {dev_key} is a development key")
    assert "production refuses it wherever the file lies: make a key of its own" in message


def test_production_refuses_a_copy_of_the_development_key_elsewhere(database_url, dev_key, tmp_path):
    copy = tmp_path / "run" / "secrets" / "jwt.pem"
    copy.parent.mkdir(parents=True)
    shutil.copy(dev_key, copy)
    copy.chmod(0o600)
    # Production's own dev dir is empty: the copy is known by what it carries.
    with pytest.raises(SettingsError, match=re.escape(f"GOSHOP_JWT_PRIVATE_KEY_FILE: {copy} is a development key")):
        make_app(
            production_users(database_url, GOSHOP_DEV_DIR=str(tmp_path / "dev"), GOSHOP_JWT_PRIVATE_KEY_FILE=str(copy))
        )


def test_production_refuses_a_key_file_others_can_read(database_url, tmp_path):
    key_file = write_signing_key(tmp_path / "jwt.pem")
    key_file.chmod(0o644)
    with pytest.raises(
        SettingsError, match=re.escape(f"GOSHOP_JWT_PRIVATE_KEY_FILE: {key_file} has mode 0644") + ".*chmod 600"
    ):
        make_app(production_users(database_url, GOSHOP_JWT_PRIVATE_KEY_FILE=str(key_file)))


def serve_users_in_production(database_url: str, tmp_path: Path, key_file: Path) -> subprocess.CompletedProcess:
    """``production.ini`` as it is deployed, with only users' secrets; a
    process that starts is stopped after 10 s (TimeoutExpired)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOSHOP_", "OLLAMA_"))}
    env.update(
        {
            "GOSHOP_DATABASE_URL": production_url(database_url),
            "GOSHOP_DEV_DIR": str(tmp_path / "dev"),
            "GOSHOP_JWT_PRIVATE_KEY_FILE": str(key_file),
        }
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "goshop_common.web.serve",
            "goshop_users/production.ini",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--metrics-port",
            "0",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
    )


def test_the_users_process_in_production_exits_at_start_naming_the_development_key(database_url, dev_key, tmp_path):
    copy = tmp_path / "jwt.pem"
    shutil.copy(dev_key, copy)
    result = serve_users_in_production(database_url, tmp_path, copy)
    assert result.returncode != 0
    assert f"GOSHOP_JWT_PRIVATE_KEY_FILE: {copy} is a development key" in result.stderr
