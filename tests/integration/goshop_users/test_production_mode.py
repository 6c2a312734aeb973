import pytest

from goshop_common.settings import SettingsError, load_settings
from goshop_users import make_app
from tests.support import write_signing_key


def production_users(database_url: str, **environ):
    # A password of its own: production refuses the repository's.
    url = database_url.replace("goshop:goshop@", "goshop:not-the-dev-password@")
    return load_settings(
        {}, environ={"GOSHOP_ENV": "production", "GOSHOP_DATABASE_URL": url, **environ}, service="users"
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
