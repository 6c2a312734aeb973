import datetime as dt
import shutil
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from goshop_common.auth.thumbprint import thumbprint
from goshop_common.auth.tokens import ACCESS, TokenVerifier
from goshop_common.settings import SettingsError
from goshop_devtools.settings import settings_of
from goshop_users.keys import DEV_KEY_MARK, dev_key_path, dev_thumbprints_path, load_signing_key
from goshop_users.tokens import TokenIssuer


def settings_for(tmp_path, **env):
    return settings_of({}, environ={"GOSHOP_DEV_DIR": str(tmp_path), **env})


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


# --- the development key, and production refusing it -------------------------


def production_for(tmp_path, key_file, dev_dir=None, algorithm="EdDSA"):
    """The users service's production settings, its key at ``key_file``."""
    return settings_of(
        {},
        environ={
            "GOSHOP_ENV": "production",
            "GOSHOP_DATABASE_URL": "postgresql://goshop:not-the-dev-password@db.internal/goshop",
            "GOSHOP_DEV_DIR": str(dev_dir or tmp_path / "dev"),
            "GOSHOP_JWT_ALGORITHM": algorithm,
            "GOSHOP_JWT_PRIVATE_KEY_FILE": str(key_file),
        },
        service="users",
    )


def own_key(path, mode=0o600, key=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem(key or ed25519.Ed25519PrivateKey.generate()))
    path.chmod(mode)
    return path


def test_a_generated_key_is_marked_in_its_file_and_its_thumbprint_recorded(tmp_path):
    settings = settings_for(tmp_path)
    key = load_signing_key(settings)
    text = dev_key_path(settings).read_bytes()
    assert text.startswith(DEV_KEY_MARK)
    assert dev_thumbprints_path(settings).read_text().split() == [key.kid.removeprefix("dev-")]
    # The mark is text before the PEM block (RFC 7468 5.2): the file is still a key anywhere.
    assert serialization.load_pem_private_key(text, None).public_key().public_bytes_raw() == (
        key.public_key.public_bytes_raw()
    )


def test_a_key_generated_before_the_mark_is_marked_and_recorded_at_the_next_start(tmp_path):
    settings = settings_for(tmp_path)
    old = ed25519.Ed25519PrivateKey.generate()
    own_key(dev_key_path(settings), key=old)
    key = load_signing_key(settings)
    assert key.kid == f"dev-{thumbprint(old.public_key(), 'EdDSA')}"
    assert dev_key_path(settings).read_bytes().startswith(DEV_KEY_MARK)
    assert oct(dev_key_path(settings).stat().st_mode & 0o777) == "0o600"
    assert key.kid.removeprefix("dev-") in dev_thumbprints_path(settings).read_text().split()
    # Once: a second start changes nothing.
    before = (dev_key_path(settings).read_bytes(), dev_thumbprints_path(settings).read_text())
    load_signing_key(settings)
    assert (dev_key_path(settings).read_bytes(), dev_thumbprints_path(settings).read_text()) == before


def test_a_regenerated_dev_key_leaves_the_old_thumbprint_recorded(tmp_path):
    settings = settings_for(tmp_path)
    first = load_signing_key(settings)
    dev_key_path(settings).unlink()
    second = load_signing_key(settings)
    assert first.kid != second.kid
    recorded = dev_thumbprints_path(settings).read_text().split()
    assert recorded == [first.kid.removeprefix("dev-"), second.kid.removeprefix("dev-")]


def test_the_dev_key_named_by_the_setting_keeps_its_dev_kid_in_development(tmp_path):
    settings = settings_for(tmp_path)
    generated = load_signing_key(settings)
    copy = tmp_path / "elsewhere" / "jwt.pem"
    copy.parent.mkdir()
    shutil.copy(dev_key_path(settings), copy)
    named = load_signing_key(settings_for(tmp_path, GOSHOP_JWT_PRIVATE_KEY_FILE=str(copy)))
    assert named.kid == generated.kid


@pytest.fixture
def dev_key(tmp_path):
    """A development key generated under tmp_path/dev, as ``make run`` makes one."""
    settings = settings_for(tmp_path / "dev")
    load_signing_key(settings)
    return dev_key_path(settings)


def refused(settings) -> str:
    with pytest.raises(SettingsError) as caught:
        load_signing_key(settings)
    return str(caught.value)


def test_production_refuses_the_dev_key_where_development_keeps_it(tmp_path, dev_key):
    message = refused(production_for(tmp_path, dev_key))
    assert message.startswith(f"GOSHOP_JWT_PRIVATE_KEY_FILE: {dev_key} is a development key")
    assert "openssl genpkey -algorithm ed25519" in message


def test_production_refuses_a_copy_of_the_dev_key_anywhere_by_its_mark(tmp_path, dev_key):
    copy = tmp_path / "secrets" / "jwt.pem"
    copy.parent.mkdir()
    shutil.copy(dev_key, copy)
    # Another machine's dev dir: nothing recorded there, the file carries its mark.
    assert "is a development key" in refused(production_for(tmp_path, copy, dev_dir=tmp_path / "elsewhere"))


def test_production_refuses_a_converted_copy_of_the_dev_key_by_its_recorded_thumbprint(tmp_path, dev_key):
    # Rewritten without the mark (as openssl pkey would): the same key, known by its thumbprint.
    key = serialization.load_pem_private_key(dev_key.read_bytes(), None)
    converted = own_key(tmp_path / "secrets" / "jwt.pem", key=key)
    assert DEV_KEY_MARK not in converted.read_bytes()
    message = refused(production_for(tmp_path, converted, dev_dir=dev_key.parent.parent))
    assert f"thumbprint {thumbprint(key.public_key(), 'EdDSA')}" in message


def test_production_refuses_an_rs256_dev_key_too(tmp_path):
    settings = settings_for(tmp_path / "dev", GOSHOP_JWT_ALGORITHM="RS256")
    load_signing_key(settings)
    message = refused(production_for(tmp_path, dev_key_path(settings), algorithm="RS256"))
    assert "is a development key" in message
    assert "rsa_keygen_bits" in message


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660, 0o666, 0o610])
def test_production_refuses_a_key_file_its_group_or_others_can_reach(tmp_path, mode):
    key_file = own_key(tmp_path / "jwt.pem", mode)
    message = refused(production_for(tmp_path, key_file))
    assert message == (
        f"GOSHOP_JWT_PRIVATE_KEY_FILE: {key_file} has mode {mode:04o}, open to its group or others; production "
        f"refuses a signing key anyone but its owner can read: chmod 600 {key_file} "
        "(owned by the user the service runs as)"
    )


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_production_starts_with_a_key_of_its_own_only_its_owner_can_read(tmp_path, mode):
    key_file = own_key(tmp_path / "jwt.pem", mode)
    key = load_signing_key(production_for(tmp_path, key_file))
    assert key.kid == thumbprint(key.public_key, "EdDSA")


def test_production_follows_a_symlinked_key_to_the_file_it_checks(tmp_path):
    # As Kubernetes mounts a Secret: the path is a symlink, the mode is the file's.
    key_file = own_key(tmp_path / "..data" / "jwt.pem", 0o644)
    link = tmp_path / "jwt.pem"
    link.symlink_to(key_file)
    assert "mode 0644" in refused(production_for(tmp_path, link))
    key_file.chmod(0o600)
    assert load_signing_key(production_for(tmp_path, link)).kid


def test_a_key_file_that_is_not_a_pem_key_fails_at_start_with_the_setting_named(tmp_path):
    path = tmp_path / "jwt.pem"
    path.write_text("not a key\n")
    with pytest.raises(SettingsError, match=r"GOSHOP_JWT_PRIVATE_KEY_FILE: .* is not an unencrypted PEM private key"):
        load_signing_key(settings_for(tmp_path, GOSHOP_JWT_PRIVATE_KEY_FILE=str(path)))


def test_a_dev_key_that_cannot_be_marked_still_starts_development(tmp_path, caplog):
    settings = settings_for(tmp_path)
    own_key(dev_key_path(settings))
    # Where the record should go, something that cannot be written (even by root).
    dev_thumbprints_path(settings).mkdir()
    key = load_signing_key(settings)
    assert key.kid.startswith("dev-")
    assert "could not mark the development key" in caplog.text
