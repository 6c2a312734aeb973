"""Minting access and refresh tokens with the users service's signing key."""

from __future__ import annotations

import datetime as dt
import uuid

import jwt

from goshop_common.auth.tokens import ACCESS, REFRESH
from goshop_users.keys import SigningKey


class TokenIssuer:
    """Signs goshop's JWTs with the users service's key: access tokens that
    live ``access_ttl`` seconds, refresh tokens that end with their session."""

    def __init__(self, key: SigningKey, issuer: str, access_ttl: int):
        self.key = key
        self.issuer = issuer
        self.access_ttl = access_ttl

    def _sign(self, claims: dict) -> str:
        # Verifiers pick the key from the JWKS document by ``kid``.
        headers = {"kid": self.key.kid} if self.key.kid else None
        return jwt.encode(claims, self.key.private_key, algorithm=self.key.algorithm, headers=headers)

    def access_token(self, user_id: uuid.UUID, email: str, session_id: uuid.UUID, now: dt.datetime) -> str:
        return self._sign(
            {
                "iss": self.issuer,
                "sub": str(user_id),
                # Verifiers are told which type they expect, so a refresh token
                # never passes for an access token, nor the other way round.
                "typ": ACCESS,
                "sid": str(session_id),
                # Every token must carry one (goshop_common.auth.tokens); only a
                # refresh token's is ever looked up, so an access token's is random.
                "jti": str(uuid.uuid4()),
                "email": email,
                "iat": now,
                "exp": now + dt.timedelta(seconds=self.access_ttl),
            }
        )

    def refresh_token(
        self, user_id: uuid.UUID, session_id: uuid.UUID, jti: uuid.UUID, now: dt.datetime, expires_at: dt.datetime
    ) -> str:
        """A refresh token for the session's ``jti`` (goshop_users.sessions
        compares it with the session's current one), valid until ``expires_at``."""
        return self._sign(
            {
                "iss": self.issuer,
                "sub": str(user_id),
                "typ": REFRESH,
                "sid": str(session_id),
                "jti": str(jti),
                "iat": now,
                "exp": expires_at,
            }
        )
