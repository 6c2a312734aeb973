"""Verifying goshop's JWTs: algorithm pinned, issuer, expiry and token type checked.

Users signs; every service verifies with users' public key (or, when HS256 is
configured, the shared secret). A refresh token is never accepted where an
access token is expected, nor the reverse: the ``typ`` claim must match.
"""

from __future__ import annotations

import collections
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import jwt

from goshop_common.web.errors import ApiError
from goshop_common.web.requestlog import USER_ID_ENVIRON_KEY

if TYPE_CHECKING:
    from pyramid.request import Request

ACCESS = "access"
REFRESH = "refresh"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "typ", "sid", "jti"]
LEEWAY_SECONDS = 5
# The verified-token cache: how many tokens, and for how long at most. A
# cached token is trusted without its signature being checked again, so the
# cap bounds how long a key withdrawn from the JWKS keeps vouching for tokens
# it signed (a minute), whatever their expiry.
CACHE_SIZE = 4096
CACHE_SECONDS = 60.0


class KeySource(Protocol):
    def get(self, kid: str) -> Any: ...


class InvalidToken(Exception):
    """The token is not one of ours, is expired, or is of the wrong type."""


class ExpiredToken(InvalidToken):
    """A token that is ours and of the expected type, but past its ``exp``.

    Told apart so a client learns to refresh rather than to log in again; it
    is only said of a token whose signature, issuer and type all check out,
    so it tells a forger nothing."""


class _VerifiedTokens:
    """The claims of tokens already verified, by the exact token string.

    Bounded (least recently used go first) and honouring expiry: an entry is
    dropped at the token's ``exp`` (without the leeway verification allows)
    or after CACHE_SECONDS, whichever comes first. Only successful
    verifications are cached, so a flood of bad tokens costs a verification
    each and evicts nothing. Callers get a copy of the claims: one request
    changing its claims cannot change another's."""

    def __init__(self, size: int, seconds: float, clock: Callable[[], float]):
        self.size = size
        self.seconds = seconds
        self.clock = clock
        self._entries: collections.OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, token: str, expected_type: str) -> dict[str, Any] | None:
        key = (token, expected_type)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            until, claims = entry
            if self.clock() >= until:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        return dict(claims)

    def put(self, token: str, expected_type: str, claims: dict[str, Any]) -> None:
        now = self.clock()
        until = min(float(claims["exp"]), now + self.seconds)
        if until <= now:
            return  # accepted within the leeway only: not worth keeping
        with self._lock:
            self._entries[(token, expected_type)] = (until, dict(claims))
            self._entries.move_to_end((token, expected_type))
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


class TokenVerifier:
    """Checks a token's signature, algorithm, issuer, expiry and type, and
    remembers the tokens it accepted (see _VerifiedTokens): a client sends
    the same access token with every request for its lifetime, and the
    signature check and PyJWT's two parses of it are most of what
    authentication costs."""

    def __init__(
        self,
        algorithm: str,
        issuer: str,
        keys: KeySource,
        cache_size: int = CACHE_SIZE,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
    ):
        """``keys`` maps a key id to a verification key (a public key object, or
        the secret for HS256 under the id ``""``): a dict, or a store that
        fetches keys it has not seen (goshop_common.auth.jwks). ``cache_size``
        0 turns the cache off."""
        self.algorithm = algorithm
        self.issuer = issuer
        self.keys = keys
        self._verified = _VerifiedTokens(cache_size, cache_seconds, clock) if cache_size > 0 else None

    def verify(self, token: str, expected_type: str) -> dict[str, Any]:
        if self._verified is not None:
            claims = self._verified.get(token, expected_type)
            if claims is not None:
                return claims
        claims = self._verify(token, expected_type)
        if self._verified is not None:
            self._verified.put(token, expected_type, claims)
        return claims

    def _verify(self, token: str, expected_type: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("alg") != self.algorithm:
            raise InvalidToken("unexpected algorithm")
        key = self.keys.get(header.get("kid", ""))
        if key is None:
            raise InvalidToken("unknown key id")
        try:
            claims = self._decode(token, key, verify_exp=True)
        except jwt.ExpiredSignatureError:
            # PyJWT checks exp before the issuer: decode again without it, so
            # "expired" is only ever said of an otherwise good token.
            claims = self._decode(token, key, verify_exp=False)
            if claims.get("typ") != expected_type:
                raise InvalidToken("wrong token type") from None
            raise ExpiredToken("expired") from None
        if claims.get("typ") != expected_type:
            raise InvalidToken("wrong token type")
        return claims

    def _decode(self, token: str, key: Any, verify_exp: bool) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS, "verify_exp": verify_exp},
            )
        except jwt.ExpiredSignatureError:
            raise
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc


# What a 401's WWW-Authenticate says (RFC 6750 3): the descriptions a client
# may show or log. Only "expired" is told apart from the rest: it means
# "refresh", anything else "log in again", and why a token is not ours
# (signature, key id, claims) is nothing a forger should hear.
EXPIRED = "the access token expired"
INVALID = "the access token is invalid"
SESSION_ENDED = "the session of the access token has ended"
# RFC 6750 3: error_description is %x20-21 / %x23-5B / %x5D-7E, so there is
# no quote or backslash to escape: the challenge refuses them instead.
_QUOTABLE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


def challenge(error: str | None = None, description: str | None = None, realm: str | None = None) -> str:
    """A ``WWW-Authenticate`` Bearer challenge (RFC 6750 3). Without ``error``
    when the request carried no credentials (3.1: "SHOULD NOT include an
    error code"); realm, error and description in that order otherwise."""
    params = {"realm": realm, "error": error, "error_description": description}
    for name, value in params.items():
        if value is not None and not _QUOTABLE.fullmatch(value):
            raise ValueError(f"{name} must be printable ASCII without quote or backslash: {value!r}")
    parts = [f'{name}="{value}"' for name, value in params.items() if value is not None]
    return "Bearer " + ", ".join(parts) if parts else "Bearer"


def bearer_token(request: Request) -> str:
    """The token from ``Authorization: Bearer <token>``; 401 ``unauthorized`` when
    absent or sent under another scheme (RFC 6750 3.1 counts both as no
    authentication information: a bare challenge)."""
    header: str = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", headers={"WWW-Authenticate": challenge()})
    return token


def invalid_token(description: str = INVALID) -> ApiError:
    """The 401 for an access token that does not authenticate: bad, expired,
    or (users' session management) of a session that has ended. RFC 6750's
    ``invalid_token`` covers them all: "expired, revoked, malformed, or
    invalid"; the description says which, as far as is safe (EXPIRED, INVALID,
    SESSION_ENDED). The body is the seed's, whatever the case."""
    return ApiError(401, "invalid token", headers={"WWW-Authenticate": challenge("invalid_token", description)})


def authenticated_claims(request: Request, verifier: TokenVerifier) -> dict[str, Any]:
    """The verified access-token claims of the request, or a 401 in the seed's words."""
    token = bearer_token(request)
    try:
        claims = verifier.verify(token, ACCESS)
    except ExpiredToken:
        raise invalid_token(EXPIRED) from None
    except InvalidToken:
        raise invalid_token() from None
    request.environ[USER_ID_ENVIRON_KEY] = claims["sub"]
    return claims


CLAIMS_ENVIRON_KEY = "goshop.claims"


def require_access_token(request: Request, **_kwargs: Any) -> None:
    """A Cornice validator, listed first: an anonymous caller gets its 401
    before any body rule is checked (and learns nothing about them)."""
    request.environ[CLAIMS_ENVIRON_KEY] = authenticated_claims(request, request.registry.token_verifier)


def request_claims(request: Request) -> dict[str, Any]:
    """The claims ``require_access_token`` verified, or verify them now."""
    claims: dict[str, Any] | None = request.environ.get(CLAIMS_ENVIRON_KEY)
    if claims is None:
        claims = authenticated_claims(request, request.registry.token_verifier)
        request.environ[CLAIMS_ENVIRON_KEY] = claims
    return claims
