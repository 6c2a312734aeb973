"""What the users API answers, declared once for its OpenAPI document
(goshop_common.web.openapi); the views name these on their decorators."""

from __future__ import annotations

import colander

from goshop_common.web.openapi import CHALLENGE, RETRY_AFTER, SERVICE_UNAVAILABLE, Reply, error
from goshop_common.web.schemas import body, field, list_of

# register_view answers the new account and points at /v1/users/me.
ACCOUNT = Reply(
    "The account, created.",
    body(
        "account",
        field("id", format="uuid"),
        field("email", format="email"),
        field("created_at", format="date-time"),
        component="Account",
    ),
    headers={"Location": "Where the account is read: /v1/users/me."},
)

TOKENS = Reply(
    "A new access token and refresh token.",
    body(
        "tokens",
        field("access_token", minLength=1),
        field("refresh_token", minLength=1),
        field("token_type", enum=["Bearer"]),
        field("expires_in", colander.Integer(), minimum=1, description="Seconds the access token is valid."),
        component="TokenPair",
    ),
)

# What me_view reads from the verified claims: ``subject`` is the token's
# ``typ``, always "access" (nothing else authenticates); ``email`` may be
# absent from a token, hence null.
ME = Reply(
    "The access token's claims.",
    body(
        "me",
        field("uid", format="uuid"),
        field("email", nullable=True),
        field("issuer"),
        field("subject", enum=["access"]),
        field("issued_at", format="date-time"),
        field("expires_at", format="date-time"),
        component="AccessTokenClaims",
    ),
)

REVOKED = Reply(
    "Every session of the caller is ended, its own included.",
    body(
        "revoked",
        field("revoked", colander.Integer(), minimum=1, description="Sessions ended."),
        component="AllSessionsEnded",
    ),
)

SESSION = body(
    "session",
    field("id", format="uuid"),
    field("created_at", format="date-time"),
    field("last_refreshed_at", format="date-time", nullable=True, description="null until its first refresh"),
    field("user_agent", nullable=True, description="The login's User-Agent, cut to 256 characters."),
    field("client_address", nullable=True, description="The address the login came from."),
    field("current", colander.Boolean(), description="Whether the access token presented belongs to it."),
    component="Session",
)
SESSIONS = Reply(
    "The caller's sessions that can still refresh, newest first.",
    body("sessions", list_of("sessions", SESSION), component="SessionList"),
)
OTHERS_REVOKED = Reply(
    "Every session of the caller but the current one is ended.",
    body(
        "revoked",
        field("revoked", colander.Integer(), minimum=0, description="Sessions ended."),
        component="OtherSessionsEnded",
    ),
)

# jwks_view sets the Cache-Control (public, five minutes).
JWKS = Reply(
    "The JSON Web Key Set (RFC 7517) that verifies goshop's tokens.",
    body(
        "jwks",
        list_of(
            "keys",
            body("key", field("kty"), field("kid"), field("alg"), field("use", enum=["sig"]), component="JsonWebKey"),
        ),
        component="JsonWebKeySet",
    ),
    headers={"Cache-Control": "How long the keys may be cached."},
)

# One answer however a refresh token fails; the description names the cases.
# No WWW-Authenticate: the refresh token is in the body, not an HTTP
# authentication scheme's credential (goshop_users.views._refresh_claims).
INVALID_TOKEN = error("invalid token: unknown, expired, revoked or reused refresh token")

# Managing sessions takes a live session: the token's own must not have ended
# (goshop_users.sessions). Replaces the 401 that ``auth`` adds.
SESSION_ENDED = error(
    "unauthorized (no credentials) or invalid token: bad, expired, or of a session that has ended "
    "(revoked, logged out or expired)",
    {
        "WWW-Authenticate": CHALLENGE["WWW-Authenticate"]
        + ' A token of a session that has ended: `Bearer error="invalid_token", '
        'error_description="the session of the access token has ended"`.'
    },
)

# By view; the 400, 413 and 415 of the body schema, and the 401 of a view
# with ``auth``, are added by goshop_common.web.openapi itself.
REGISTER = {201: ACCOUNT, 409: error("email already taken"), 503: SERVICE_UNAVAILABLE}
LOGIN = {
    200: TOKENS,
    401: error("invalid credentials"),
    429: error("too many login attempts", RETRY_AFTER),
    503: SERVICE_UNAVAILABLE,
}
REFRESH = {200: TOKENS, 401: INVALID_TOKEN, 503: SERVICE_UNAVAILABLE}
LOGOUT = {204: Reply("The session is ended."), 401: INVALID_TOKEN, 503: SERVICE_UNAVAILABLE}
ME_RESPONSES = {200: ME}
LOGOUT_ALL = {200: REVOKED, 401: SESSION_ENDED, 503: SERVICE_UNAVAILABLE}
JWKS_RESPONSES = {200: JWKS}
SESSIONS_RESPONSES = {200: SESSIONS, 401: SESSION_ENDED, 503: SERVICE_UNAVAILABLE}
END_SESSION = {
    204: Reply("The session is ended: its refresh token no longer works."),
    401: SESSION_ENDED,
    404: error("no such session of yours (unknown, ended, or someone else's)"),
    503: SERVICE_UNAVAILABLE,
}
LOGOUT_OTHERS = {200: OTHERS_REVOKED, 401: SESSION_ENDED, 503: SERVICE_UNAVAILABLE}
