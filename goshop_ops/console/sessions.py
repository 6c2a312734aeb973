"""An operator's console sign-in: the ops token asked once, then a cookie.

The cookie is Pyramid's signed session (``SignedCookieSessionFactory``):
HttpOnly, ``SameSite=Strict``, ``Secure`` in production, scoped to the
console's path, and kept for ``GOSHOP_OPS_CONSOLE_SESSION_SECONDS`` from the
sign-in, not renewed by use. Its signing key is derived from the ops token,
so rotating the token signs every operator out. The session also holds the
CSRF token (Pyramid's session CSRF storage) that every form posts back.

A signed cookie lives in the browser, not in ops (which owns no table): a
sign-out empties it there and remembers its session id in this process
until it would have expired, so a copy taken before the sign-out no longer
opens the console here. Another ops process learns of it only by expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time

from pyramid.session import SignedCookieSessionFactory

from goshop_ops.operators import is_operator

COOKIE_NAME = "goshop_ops_console"
COOKIE_PATH = "/ops/"
_OPERATOR = "operator"
_SESSION_ID = "sid"
_EXPIRES = "expires"

# Messages, not secrets.
WRONG_TOKEN = "That is not the operator token."  # noqa: S105
CUSTOMER_TOKEN = (
    "That is a customer's access token. The ops console opens only with the operator token (GOSHOP_OPS_TOKEN)."  # noqa: S105
)
NO_TOKEN = "Enter the operator token."  # noqa: S105


def session_factory(ops_token: str, *, secure: bool, max_age: int):
    """The console's cookie session, signed with a key derived from ``ops_token``."""
    secret = hmac.new(ops_token.encode(), b"goshop ops console session", hashlib.sha256).hexdigest()
    return SignedCookieSessionFactory(
        secret,
        cookie_name=COOKIE_NAME,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="Strict",
        # The expiry is the sign-in's (_EXPIRES), never pushed back by use.
        timeout=None,
        reissue_time=None,
        # A failed request must not set or renew the cookie.
        set_on_exception=False,
    )


def looks_like_access_token(token: str) -> bool:
    """Whether ``token`` is a JWT (a customer's access token is one): three
    base64url parts, the first a JSON header naming an algorithm. Only to say
    why it is refused; it is never verified or trusted here."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        return False
    return isinstance(header, dict) and "alg" in header


def refusal(token: str, ops_token: str) -> str | None:
    """Why ``token`` does not sign in, or None when it is the operator token."""
    token = token.strip()
    if not token:
        return NO_TOKEN
    if is_operator(f"Bearer {token}", ops_token):
        return None
    return CUSTOMER_TOKEN if looks_like_access_token(token) else WRONG_TOKEN


class SignedOut:
    """The session ids signed out in this process, until they would have expired."""

    def __init__(self) -> None:
        self._ids: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, session_id: str, expires: float) -> None:
        now = time.time()
        with self._lock:
            self._ids = {sid: at for sid, at in self._ids.items() if at > now}
            self._ids[session_id] = expires

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            return session_id in self._ids


def sign_in(request, lifetime: int) -> None:
    """Make ``request``'s session an operator's, with a fresh id and CSRF
    token (a session fixed before the sign-in is not carried over)."""
    session = request.session
    session.invalidate()
    session[_OPERATOR] = True
    session[_SESSION_ID] = secrets.token_urlsafe(16)
    session[_EXPIRES] = time.time() + lifetime
    session.new_csrf_token()


def is_signed_in(request) -> bool:
    session = request.session
    if not session.get(_OPERATOR):
        return False
    if session.get(_EXPIRES, 0) <= time.time():
        return False
    return session.get(_SESSION_ID) not in request.registry.ops_console_signed_out


def sign_out(request) -> None:
    session = request.session
    if session.get(_SESSION_ID):
        request.registry.ops_console_signed_out.add(session[_SESSION_ID], session.get(_EXPIRES, 0))
    session.invalidate()


def expires_at(request) -> float:
    return float(request.session.get(_EXPIRES, 0))
