"""Verifying goshop's JWTs: algorithm pinned, issuer, expiry and token type checked.

Users signs; every service verifies with users' public key (or, when HS256 is
configured, the shared secret). A refresh token is never accepted where an
access token is expected, nor the reverse: the ``typ`` claim must match.
"""

from __future__ import annotations

from typing import Any, Protocol

import jwt

from goshop_common.web.errors import ApiError
from goshop_common.web.requestlog import USER_ID_ENVIRON_KEY

ACCESS = "access"
REFRESH = "refresh"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "typ", "sid", "jti"]
LEEWAY_SECONDS = 5


class KeySource(Protocol):
    def get(self, kid: str) -> Any: ...


class InvalidToken(Exception):
    """The token is not one of ours, is expired, or is of the wrong type."""


class TokenVerifier:
    def __init__(self, algorithm: str, issuer: str, keys: KeySource):
        """``keys`` maps a key id to a verification key (a public key object, or
        the secret for HS256 under the id ``""``): a dict, or a store that
        fetches keys it has not seen (goshop_common.auth.jwks)."""
        self.algorithm = algorithm
        self.issuer = issuer
        self.keys = keys

    def verify(self, token: str, expected_type: str) -> dict:
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
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        if claims.get("typ") != expected_type:
            raise InvalidToken("wrong token type")
        return claims


def bearer_token(request) -> str:
    """The token from ``Authorization: Bearer <token>``; 401 ``unauthorized`` when absent."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
    return token


def authenticated_claims(request, verifier: TokenVerifier) -> dict:
    """The verified access-token claims of the request, or a 401 in the seed's words."""
    token = bearer_token(request)
    try:
        claims = verifier.verify(token, ACCESS)
    except InvalidToken:
        raise ApiError(401, "invalid token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    request.environ[USER_ID_ENVIRON_KEY] = claims["sub"]
    return claims


CLAIMS_ENVIRON_KEY = "goshop.claims"


def require_access_token(request, **_kwargs) -> None:
    """A Cornice validator, listed first: an anonymous caller gets its 401
    before any body rule is checked (and learns nothing about them)."""
    request.environ[CLAIMS_ENVIRON_KEY] = authenticated_claims(request, request.registry.token_verifier)


def request_claims(request) -> dict:
    """The claims ``require_access_token`` verified, or verify them now."""
    claims = request.environ.get(CLAIMS_ENVIRON_KEY)
    if claims is None:
        claims = authenticated_claims(request, request.registry.token_verifier)
        request.environ[CLAIMS_ENVIRON_KEY] = claims
    return claims
