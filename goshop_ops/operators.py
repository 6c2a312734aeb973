"""Who may use the ops API: operators, holding the ops token.

An operator sends ``Authorization: Bearer <GOSHOP_OPS_TOKEN>``. The token is
a shared secret of the operations team, set per deployment (production
refuses the development default and anything under 32 characters); rotating
it is changing the setting and restarting. A customer's access token is not
an operator credential: the timeline shows any customer's order, so being
logged in to the shop grants nothing here.
"""

from __future__ import annotations

import hmac

from goshop_common.auth.tokens import challenge
from goshop_common.web.errors import ApiError

REALM = "goshop-ops"
# RFC 6750 3.1: no error code when no Bearer credential was sent; a wrong one
# is an invalid_token. The body is the seed's "unauthorized" either way.
NO_CREDENTIALS = challenge(realm=REALM)
WRONG_TOKEN = challenge("invalid_token", "the operator token is invalid", realm=REALM)


def _bearer(authorization: str) -> str:
    """The token of ``Bearer <token>``, or "" for anything else."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def is_operator(authorization: str, ops_token: str) -> bool:
    token = _bearer(authorization)
    if not token or not ops_token:
        return False
    # Constant time: the comparison must not tell a guesser how much was right.
    return hmac.compare_digest(token.encode(), ops_token.encode())


def require_operator(request, **_kwargs) -> None:
    """A Cornice validator, listed first: a caller who is not an operator
    gets 401 before anything else is looked at."""
    authorization = request.headers.get("Authorization", "")
    if not is_operator(authorization, request.registry.goshop_settings.ops_token):
        refused = WRONG_TOKEN if _bearer(authorization) else NO_CREDENTIALS
        raise ApiError(401, "unauthorized", headers={"WWW-Authenticate": refused})
