"""The users API, exactly as the seed defines it."""

from __future__ import annotations

import datetime as dt
import logging

import colander
from pyramid.response import Response
from pyramid.view import exception_view_config

from goshop_common import clock
from goshop_common.auth.tokens import REFRESH, SESSION_ENDED, InvalidToken, authenticated_claims, invalid_token
from goshop_common.db.session import request_bind
from goshop_common.web.clientip import client_network
from goshop_common.web.errors import ApiError, api_error_view, error_response
from goshop_common.web.openapi import BEARER
from goshop_common.web.rest import JSON, Service, Tag, body_validator
from goshop_common.web.schemas import StrictString, normalise_email
from goshop_users import responses
from goshop_users.accounts import Accounts, EmailTaken
from goshop_users.schemas import LoginSchema, RefreshTokenSchema, RegisterSchema
from goshop_users.sessions import Caller, RefreshRejected, SessionEnded, Sessions
from goshop_users.throttle import LoginThrottle, Throttled

log = logging.getLogger("goshop.users.sessions")

USERS = Tag("users", "Accounts and their tokens: register, log in, refresh, log out; the keys that verify tokens.")
SESSIONS = Tag("sessions", "The caller's sessions, one per login: list them, end one, end all, end the others.")
register = Service(name="users_register", path="/v1/users/register", description="Create an account.", tag=USERS)
login = Service(name="users_login", path="/v1/users/login", description="Exchange a password for tokens.", tag=USERS)
me = Service(name="users_me", path="/v1/users/me", description="Who the access token belongs to.", tag=USERS)
refresh = Service(name="users_refresh", path="/v1/users/refresh", description="Rotate a refresh token.", tag=USERS)
logout = Service(name="users_logout", path="/v1/users/logout", description="End one session.", tag=USERS)
logout_all = Service(
    name="users_logout_all", path="/v1/users/logout_all", description="End every session.", tag=SESSIONS
)
sessions = Service(
    name="users_sessions", path="/v1/users/sessions", description="My sessions that are still active.", tag=SESSIONS
)
session = Service(name="users_session", path="/v1/users/sessions/{id}", description="One of my sessions.", tag=SESSIONS)
logout_others = Service(
    name="users_logout_others",
    path="/v1/users/logout_others",
    description="End every session but this one.",
    tag=SESSIONS,
)
jwks = Service(
    name="jwks", path="/.well-known/jwks.json", description="Public keys that verify goshop tokens.", tag=USERS
)


def utcnow() -> dt.datetime:
    # Whole seconds: JWT times are whole seconds, and the seed shows them so.
    return clock.utcnow().replace(microsecond=0)


def rfc3339(moment: dt.datetime) -> str:
    return clock.rfc3339(moment, milliseconds=False)


def _accounts(request) -> Accounts:
    return Accounts(request.dbsession, request.registry.passwords, utcnow)


def _sessions(request) -> Sessions:
    settings = request.registry.goshop_settings
    return Sessions(
        request.dbsession,
        request.registry.token_issuer,
        refresh_ttl=settings.refresh_ttl,
        reuse_interval=settings.refresh_reuse_interval,
        clock=utcnow,
    )


def _throttle(request) -> LoginThrottle:
    settings = request.registry.goshop_settings
    # The engine, not request.dbsession: a reservation commits on its own,
    # before the password is verified, so no row lock spans argon2.
    return LoginThrottle(
        request_bind(request),
        max_per_email_and_client=settings.login_max_failures_per_email_and_client,
        max_per_client=settings.login_max_failures_per_client,
        max_per_email=settings.login_max_failures_per_email,
        window_seconds=settings.login_failure_window,
        clock=utcnow,
    )


def _refresh_claims(request) -> dict:
    """The claims of the body's refresh token, or the seed's 401. That 401 has
    no WWW-Authenticate: the token is a grant in the body (RFC 6749 6), not a
    credential of an HTTP authentication scheme, so RFC 6750 3 does not apply,
    and a Bearer challenge would tell the client to send it as one."""
    try:
        return request.registry.token_verifier.verify(request.validated["refresh_token"], REFRESH)
    except InvalidToken:
        raise ApiError(401, "invalid token") from None


@register.post(schema=RegisterSchema(), validators=(body_validator,), content_type=JSON, responses=responses.REGISTER)
def register_view(request):
    data = request.validated
    try:
        user = _accounts(request).register(data["email"], data["password"])
    except EmailTaken:
        raise ApiError(409, "email already taken") from None
    request.response.status = 201
    request.response.headers["Location"] = "/v1/users/me"
    return {"id": str(user.id), "email": user.email, "created_at": rfc3339(user.created_at)}


@login.post(schema=LoginSchema(), validators=(body_validator,), content_type=JSON, responses=responses.LOGIN)
def login_view(request):
    email = normalise_email(request.validated["email"])
    password = request.validated["password"]
    throttle = _throttle(request)
    try:
        # Counted before the password is checked (and before request.dbsession
        # takes a connection): the reservation is the failure unless given back.
        reservation = throttle.reserve(email, client_network(request.client_ip))
    except Throttled as refused:
        raise ApiError(429, "too many login attempts", headers={"Retry-After": str(refused.retry_after)}) from None
    user = _accounts(request).authenticate(email, password, request_bind(request))
    if user is None:
        raise ApiError(401, "invalid credentials")
    throttle.succeeded(reservation)
    return _sessions(request).open(user, request.user_agent, request.client_ip).as_json()


@me.get(auth=BEARER, responses=responses.ME_RESPONSES)
def me_view(request):
    claims = authenticated_claims(request, request.registry.token_verifier)
    return {
        "uid": claims["sub"],
        "email": claims.get("email"),
        "issuer": claims["iss"],
        "subject": claims["typ"],
        "issued_at": rfc3339(dt.datetime.fromtimestamp(claims["iat"], dt.UTC)),
        "expires_at": rfc3339(dt.datetime.fromtimestamp(claims["exp"], dt.UTC)),
    }


@refresh.post(schema=RefreshTokenSchema(), validators=(body_validator,), content_type=JSON, responses=responses.REFRESH)
def refresh_view(request):
    claims = _refresh_claims(request)
    try:
        pair = _sessions(request).refresh(claims)
    except RefreshRejected:
        # Returned, not raised: a detected reuse has just revoked the family,
        # and that revocation must commit.
        return error_response(401, "invalid token")
    return pair.as_json()


@logout.post(schema=RefreshTokenSchema(), validators=(body_validator,), content_type=JSON, responses=responses.LOGOUT)
def logout_view(request):
    claims = _refresh_claims(request)
    if not _sessions(request).revoke(claims):
        raise ApiError(401, "invalid token")
    return Response(status=204)


def _managing(request) -> tuple[Sessions, Caller]:
    """For the views that manage sessions: what does it, and who asks. A
    SessionEnded they raise is the 401 of an invalid token (session_ended_view)."""
    claims = authenticated_claims(request, request.registry.token_verifier)
    return _sessions(request), Caller.of(claims)


@logout_all.post(auth=BEARER, responses=responses.LOGOUT_ALL)
def logout_all_view(request):
    sessions, caller = _managing(request)
    return {"revoked": sessions.revoke_all(caller)}


SESSION_ID = colander.SchemaNode(StrictString(), name="id", json_schema={"format": "uuid"})


@sessions.get(auth=BEARER, responses=responses.SESSIONS_RESPONSES)
def sessions_view(request):
    sessions, caller = _managing(request)
    return {
        "sessions": [
            {
                "id": str(row.id),
                "created_at": rfc3339(row.created_at),
                "last_refreshed_at": rfc3339(row.rotated_at) if row.rotated_at else None,
                "user_agent": row.user_agent,
                "client_address": row.client_address,
                "current": row.id == caller.session_id,
            }
            for row in sessions.active(caller)
        ]
    }


@session.delete(auth=BEARER, path=(SESSION_ID,), responses=responses.END_SESSION)
def end_session_view(request):
    sessions, caller = _managing(request)
    if not sessions.end(caller, request.matchdict["id"]):
        raise ApiError(404, "session not found")
    return Response(status=204)


@logout_others.post(auth=BEARER, responses=responses.LOGOUT_OTHERS)
def logout_others_view(request):
    sessions, caller = _managing(request)
    return {"revoked": sessions.end_others(caller)}


@exception_view_config(SessionEnded)
def session_ended_view(exc: SessionEnded, request):
    # Worth a line: a token of an ended session managing sessions is often
    # whoever the owner ended it to keep out.
    log.info("session management refused: the token's session has ended", extra={"session_id": str(exc)})
    # Raised, so the request's transaction rolls back (it changed nothing anyway).
    return api_error_view(invalid_token(SESSION_ENDED), request)


@jwks.get(responses=responses.JWKS_RESPONSES)
def jwks_view(request):
    request.response.cache_control = "public, max-age=300"
    return request.registry.signing_key.jwks()
