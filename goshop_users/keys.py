"""The users service's signing key and the JWKS document that publishes it.

EdDSA (Ed25519) by default, RS256 selectable, HS256 for a shared-secret setup.
With no key file configured, development generates one under ``dev_dir``
(key id ``dev-…``, so it is recognisable wherever a token travels); production
refuses to start without a key file of its own.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from goshop_common.auth.thumbprint import public_jwk, thumbprint
from goshop_common.settings import Settings, SettingsError

_KEY_TYPES = {"EdDSA": ed25519.Ed25519PrivateKey, "RS256": rsa.RSAPrivateKey}


@dataclasses.dataclass(frozen=True)
class SigningKey:
    algorithm: str
    kid: str
    private_key: Any  # key object, or the secret bytes for HS256
    public_key: Any  # verification key: public key object, or the same secret

    def jwks(self) -> dict:
        """The public half as a JSON Web Key Set; empty for a shared secret."""
        if self.algorithm == "HS256":
            return {"keys": []}
        jwk = public_jwk(self.public_key, self.algorithm)
        jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        return {"keys": [jwk]}


def _generate(algorithm: str):
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_new_key(path: Path, algorithm: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = _generate(algorithm).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    try:
        # link() fails if another process won the race; its key is the one we use.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def dev_key_path(settings: Settings) -> Path:
    return Path(settings.dev_dir) / "dev-keys" / f"jwt-dev-{settings.jwt_algorithm.lower()}.pem"


def load_signing_key(settings: Settings) -> SigningKey:
    if settings.jwt_algorithm == "HS256":
        secret = settings.jwt_secret.encode()
        return SigningKey("HS256", "", secret, secret)

    is_dev_key = not settings.jwt_private_key_file
    if is_dev_key:
        if settings.production:
            raise SettingsError(
                "GOSHOP_JWT_PRIVATE_KEY_FILE is required in production: "
                "a generated development key is refused (see README, 'Keys')"
            )
        path = dev_key_path(settings)
        if not path.exists():
            _write_new_key(path, settings.jwt_algorithm)
    else:
        path = Path(settings.jwt_private_key_file)
        if not path.exists():
            raise SettingsError(f"GOSHOP_JWT_PRIVATE_KEY_FILE: no such file: {path}")
    private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private_key, _KEY_TYPES[settings.jwt_algorithm]):
        raise SettingsError(f"GOSHOP_JWT_PRIVATE_KEY_FILE: {path} does not hold a key for {settings.jwt_algorithm}")
    public_key = private_key.public_key()
    kid = thumbprint(public_key, settings.jwt_algorithm)
    if is_dev_key:
        kid = f"dev-{kid}"
    return SigningKey(settings.jwt_algorithm, kid, private_key, public_key)
