"""A public key as a JSON Web Key, and its RFC 7638 thumbprint.

The thumbprint is the key id: users names its signing key by it (``dev-`` +
thumbprint for a generated development key), and a service verifying with a
public key file derives the same id from the file, so the two never disagree.
"""

from __future__ import annotations

import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes

# RFC 7638 3.2: the required members of each key type, the only ones hashed.
_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}


def public_jwk(public_key: Any, algorithm: str) -> dict[str, Any]:
    """``public_key`` as a JWK (RFC 7517) for ``algorithm``: no ``kid``, ``alg`` or ``use``."""
    return jwt.get_algorithm_by_name(algorithm).to_jwk(public_key, as_dict=True)


def thumbprint(public_key: Any, algorithm: str) -> str:
    """The RFC 7638 thumbprint of ``public_key``: base64url SHA-256 of its
    required members, sorted, without white space."""
    jwk = public_jwk(public_key, algorithm)
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(canonical.encode())
    return jwt.utils.base64url_encode(digest.finalize()).decode()
