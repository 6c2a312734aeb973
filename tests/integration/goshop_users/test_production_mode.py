import pytest

from goshop_common.settings import DEV_JWT_SECRET, SettingsError, load_settings
from goshop_users import make_app
from tests.support import with_settings


def test_production_refuses_to_start_without_a_signing_key_of_its_own(settings):
    with pytest.raises(SettingsError, match="GOSHOP_JWT_PRIVATE_KEY_FILE is required in production"):
        make_app(with_settings(settings, env="production", jwt_private_key_file=""))


def test_production_refuses_the_development_jwt_secret(database_url):
    with pytest.raises(SettingsError, match="development default"):
        load_settings(
            {},
            environ={
                "GOSHOP_ENV": "production",
                "GOSHOP_OPS_TOKEN": "o" * 40,
                "GOSHOP_DATABASE_URL": database_url,
                "GOSHOP_JWT_ALGORITHM": "HS256",
                "GOSHOP_JWT_SECRET": DEV_JWT_SECRET,
            },
        )


def test_production_starts_with_a_provided_key(settings, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key_file = tmp_path / "jwt.pem"
    key_file.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    app = make_app(with_settings(settings, env="production", jwt_private_key_file=str(key_file)))
    assert not app.registry.signing_key.kid.startswith("dev-")
