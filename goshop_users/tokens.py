"""Minting access and refresh tokens with the users service's signing key."""

from __future__ import annotations

import datetime as dt
import uuid

import jwt

from goshop_common.auth.tokens import ACCESS, REFRESH
from goshop_users.keys import SigningKey


class TokenIssuer:
    def __init__(self, key: SigningKey, issuer: str, access_ttl: int):
        self.key = key
        self.issuer = issuer
        self.access_ttl = access_ttl

    def _sign(self, claims: dict) -> str:
        headers = {"kid": self.key.kid} if self.key.kid else None
        return jwt.encode(claims, self.key.private_key, algorithm=self.key.algorithm, headers=headers)

    def access_token(self, user_id: uuid.UUID, email: str, session_id: uuid.UUID, now: dt.datetime) -> str:
        return self._sign(
            {
                "iss": self.issuer,
                "sub": str(user_id),
                "typ": ACCESS,
                "sid": str(session_id),
                "jti": str(uuid.uuid4()),
                "email": email,
                "iat": now,
                "exp": now + dt.timedelta(seconds=self.access_ttl),
            }
        )

    def refresh_token(
        self, user_id: uuid.UUID, session_id: uuid.UUID, jti: uuid.UUID, now: dt.datetime, expires_at: dt.datetime
    ) -> str:
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
