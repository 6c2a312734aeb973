"""Verification keys for services other than users: users' JWKS, or a key file.

``JwksKeyStore`` is PyJWT's ``PyJWKClient`` with a thin wrapper around it. The
client fetches users' ``/.well-known/jwks.json`` (through ``goshop_common.outgoing``:
200 only, at most ``MAX_JWKS_BYTES``, no redirects) and parses it into a
``PyJWKSet``. The wrapper keeps the last good keys usable with the algorithm,
fetched on first use, and fetches again when they are ``ttl`` seconds old or a
token names a key id it has not seen (users rotated its key). Fetches are
rate-limited: at most one per ``min_refresh_interval``, failed ones included, so
a flood of tokens with random key ids costs one fetch, not one per request. A
failed fetch keeps the keys it had (stale-while-error) and logs one warning
naming the URL and the error class, never the response body.

Why the wrapper and not the client's own caches: its JWK Set cache
(``lifespan``) forgets the set when it expires, so a refetch that fails then
leaves nothing to verify with; its ``cooldown_duration`` starts at successful
fetches only, so a users service that is down would cost one timeout per
unknown kid; its key cache (``cache_keys``) never expires, so a key users
rotated out would be trusted for good. The client is made with neither.

``verifier_from_settings`` picks the key source from the settings: the shared
secret for HS256, else a public key file when one is configured, else the JWKS.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa

from goshop_common import outgoing
from goshop_common.auth.thumbprint import thumbprint
from goshop_common.auth.tokens import TokenVerifier
from goshop_common.settings import SettingsError, TokenVerifierSettings

if TYPE_CHECKING:
    from pyramid.config import Configurator

log = logging.getLogger("goshop.jwks")

# A JWKS is a few hundred bytes; anything past this is not one.
MAX_JWKS_BYTES = 1024 * 1024

# The JWK key type each asymmetric algorithm verifies with. Shared secrets are
# never fetched: a symmetric key on a public URL would let anyone sign.
_KTY = {
    "EdDSA": "OKP",
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
}

_PUBLIC_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "EdDSA": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
    "RS256": (rsa.RSAPublicKey,),
}

Fetch = Callable[[str], Any]


class JwksError(Exception):
    """The JWKS could not be fetched or is not a usable key set."""


def _fetch_json(url: str, timeout: float) -> Any:
    try:
        body = outgoing.fetch(url, timeout=timeout, max_bytes=MAX_JWKS_BYTES, headers={"Accept": "application/json"})
    except outgoing.UnexpectedAnswer as exc:
        raise JwksError(str(exc)) from None
    return json.loads(body)


def _usable(entry: Any, algorithm: str) -> bool:
    """Whether a JWK entry may verify ``algorithm``: its ``alg`` is that one,
    or it has none and its ``kty`` is the one ``algorithm`` uses; and it is
    meant for signatures."""
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
        return False
    alg = entry.get("alg")
    return alg == algorithm if alg is not None else entry.get("kty") == _KTY[algorithm]


class _Client(jwt.PyJWKClient):
    """PyJWKClient without its caches, fetching the JSON document with
    ``fetch(url)`` and keeping of it the keys usable with ``algorithm``:
    ``fetch_data`` is the override its documentation offers."""

    def __init__(self, url: str, algorithm: str, timeout: float, fetch: Fetch):
        super().__init__(url, cache_keys=False, cache_jwk_set=False, timeout=timeout)
        self.algorithm = algorithm
        self._fetch = fetch

    def fetch_data(self) -> Any:
        document = self._fetch(self.uri)
        if isinstance(document, dict) and isinstance(document.get("keys"), list):
            document = {**document, "keys": [e for e in document["keys"] if _usable(e, self.algorithm)]}
        return document

    def keys_by_kid(self) -> dict[str, Any]:
        """Fetches the key set: its keys by key id, the first of two with one
        id. Raises JwksError when it is not a key set or holds no usable key
        (PyJWKSet skips those whose material does not parse)."""
        try:
            jwk_set = self.get_jwk_set(refresh=True)
        except jwt.PyJWTError as exc:
            raise JwksError(f"no usable {self.algorithm} key: {type(exc).__name__}") from None
        keys: dict[str, Any] = {}
        for jwk in jwk_set.keys:
            kid = jwk.key_id if jwk.key_id is not None else ""
            if isinstance(kid, str) and kid not in keys:
                keys[kid] = jwk.key
        return keys


class JwksKeyStore:
    """``.get(kid)`` → the public key users publishes under ``kid``, or None.

    Safe to share between threads: a reader whose key is cached and fresh takes
    no lock; fetches happen one at a time under a lock. When the cache is older
    than ``ttl`` the one reader that gets the lock refreshes it while the others
    keep using the cached key.
    """

    def __init__(
        self,
        url: str,
        algorithm: str,
        timeout: float = 2.0,
        ttl: float = 300.0,
        min_refresh_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        fetch: Fetch | None = None,
    ):
        if algorithm not in _KTY:
            raise ValueError(f"no JWKS verification for algorithm {algorithm!r}")
        outgoing.check_url(url, "the JWKS URL")
        self.url = url
        self.algorithm = algorithm
        self.timeout = timeout
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._client = _Client(url, algorithm, timeout, fetch or (lambda u: _fetch_json(u, self.timeout)))
        self._lock = threading.Lock()
        # (keys by kid, when they were fetched): replaced whole, never mutated,
        # so a reader sees one consistent snapshot without the lock.
        self._cache: tuple[Mapping[str, Any], float | None] = ({}, None)
        self._last_attempt: float | None = None

    def get(self, kid: str) -> Any:
        if not isinstance(kid, str):
            return None
        keys, fetched_at = self._cache
        key = keys.get(kid)
        if key is not None:
            if fetched_at is not None and self._clock() - fetched_at < self.ttl:
                return key
            # Stale: one reader refreshes, the rest carry on with what they have.
            if not self._lock.acquire(blocking=False):
                return key
            try:
                return self._refresh_locked(kid, was_cached=True)
            finally:
                self._lock.release()
        # Unknown kid (or nothing fetched yet): wait for any fetch under way,
        # which may be the one that brings this key.
        with self._lock:
            return self._refresh_locked(kid, was_cached=False)

    def _refresh_locked(self, kid: str, was_cached: bool) -> Any:
        keys, fetched_at = self._cache
        now = self._clock()
        fresh = fetched_at is not None and now - fetched_at < self.ttl
        if kid in keys and (fresh or not was_cached):
            # Another thread fetched while this one waited for the lock.
            return keys[kid]
        # Rate limit, failed fetches included: a flood of unknown kids costs
        # one fetch per interval, and a down users service one timeout.
        if self._last_attempt is not None and now - self._last_attempt < self.min_refresh_interval:
            return keys.get(kid)
        self._last_attempt = now
        try:
            new_keys = self._client.keys_by_kid()
        except Exception as exc:  # any failure keeps the keys we have
            fields: dict[str, object] = {"url": self.url, "error": type(exc).__name__}
            if isinstance(exc, urllib.error.HTTPError):
                fields["status"] = exc.code
            log.warning("jwks fetch failed: %s from %s", fields["error"], self.url, extra=fields)
            return keys.get(kid)
        self._cache = (new_keys, now)
        return new_keys.get(kid)

    def __repr__(self) -> str:
        return f"JwksKeyStore({self.url!r}, {self.algorithm!r})"


def load_public_key(path: str, algorithm: str) -> Any:
    file = Path(path)
    if not file.exists():
        raise SettingsError(f"GOSHOP_JWT_PUBLIC_KEY_FILE: no such file: {file}")
    try:
        key = serialization.load_pem_public_key(file.read_bytes())
    except ValueError:
        raise SettingsError(f"GOSHOP_JWT_PUBLIC_KEY_FILE: {file} is not a PEM public key") from None
    if not isinstance(key, _PUBLIC_KEY_TYPES.get(algorithm, ())):
        raise SettingsError(f"GOSHOP_JWT_PUBLIC_KEY_FILE: {file} does not hold a key for {algorithm}")
    return key


def verifier_from_settings(settings: TokenVerifierSettings) -> TokenVerifier:
    """How a service other than users verifies users' tokens."""
    algorithm, issuer = settings.jwt_algorithm, settings.jwt_issuer
    if algorithm == "HS256":
        return TokenVerifier(algorithm, issuer, {"": settings.jwt_secret.encode()})
    if settings.jwt_public_key_file:
        key = load_public_key(settings.jwt_public_key_file, algorithm)
        kid = thumbprint(key, algorithm)
        # Users names a generated development key dev-<thumbprint>.
        return TokenVerifier(algorithm, issuer, {kid: key, f"dev-{kid}": key})
    return TokenVerifier(algorithm, issuer, JwksKeyStore(settings.jwks_url, algorithm))


def includeme(config: Configurator) -> None:
    """``request.registry.token_verifier`` for services that verify users' tokens."""
    config.registry.token_verifier = verifier_from_settings(config.registry.goshop_settings)
