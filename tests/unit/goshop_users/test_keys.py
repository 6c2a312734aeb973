import datetime as dt
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from goshop_common.auth.thumbprint import thumbprint
from goshop_common.auth.tokens import ACCESS, TokenVerifier
from goshop_common.settings import SettingsError, load_settings
from goshop_users.keys import dev_key_path, load_signing_key
from goshop_users.tokens import TokenIssuer


def settings_for(tmp_path, **env):
    return load_settings({}, environ={"GOSHOP_DEV_DIR": str(tmp_path), **env})


def pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def roundtrip(key, settings):
    issuer = TokenIssuer(key, settings.jwt_issuer, 60)
    token = issuer.access_token(uuid.uuid4(), "a@b.io", uuid.uuid4(), dt.datetime.now(dt.UTC))
    verifier = TokenVerifier(key.algorithm, settings.jwt_issuer, {key.kid: key.public_key})
    return verifier.verify(token, ACCESS)


def test_development_generates_a_key_once_and_marks_it_dev(tmp_path):
    settings = settings_for(tmp_path)
    first = load_signing_key(settings)
    second = load_signing_key(settings)
    assert first.kid == f"dev-{thumbprint(first.public_key, 'EdDSA')}"
    assert first.kid == second.kid
    assert dev_key_path(settings).exists()
    assert oct(dev_key_path(settings).stat().st_mode & 0o777) == "0o600"
    assert roundtrip(first, settings)["email"] == "a@b.io"


def test_a_configured_key_file_is_used_and_not_marked_dev(tmp_path):
    path = tmp_path / "prod.pem"
    path.write_bytes(pem(ed25519.Ed25519PrivateKey.generate()))
    key = load_signing_key(settings_for(tmp_path, GOSHOP_JWT_PRIVATE_KEY_FILE=str(path)))
    assert not key.kid.startswith("dev-")
    assert key.kid == thumbprint(key.public_key, "EdDSA")


def test_a_missing_configured_key_file_fails_at_start(tmp_path):
    with pytest.raises(SettingsError, match="no such file"):
        load_signing_key(settings_for(tmp_path, GOSHOP_JWT_PRIVATE_KEY_FILE=str(tmp_path / "absent.pem")))


def test_a_key_of_the_wrong_type_fails_at_start(tmp_path):
    path = tmp_path / "rsa.pem"
    path.write_bytes(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    with pytest.raises(SettingsError, match="EdDSA"):
        load_signing_key(settings_for(tmp_path, GOSHOP_JWT_PRIVATE_KEY_FILE=str(path)))


def test_rs256_is_selectable_and_published(tmp_path):
    settings = settings_for(tmp_path, GOSHOP_JWT_ALGORITHM="RS256")
    key = load_signing_key(settings)
    [jwk] = key.jwks()["keys"]
    assert (jwk["kty"], jwk["alg"], jwk["kid"]) == ("RSA", "RS256", key.kid)
    assert roundtrip(key, settings)["typ"] == "access"


def test_hs256_publishes_no_keys(tmp_path):
    key = load_signing_key(settings_for(tmp_path, GOSHOP_JWT_ALGORITHM="HS256"))
    assert key.jwks() == {"keys": []}


def test_the_published_jwk_verifies_a_token(tmp_path):
    settings = settings_for(tmp_path)
    key = load_signing_key(settings)
    issuer = TokenIssuer(key, settings.jwt_issuer, 60)
    token = issuer.access_token(uuid.uuid4(), "a@b.io", uuid.uuid4(), dt.datetime.now(dt.UTC))
    [published] = jwt.PyJWKSet.from_dict(key.jwks()).keys
    assert jwt.decode(token, published.key, algorithms=["EdDSA"], issuer="goshop-users")["email"] == "a@b.io"
