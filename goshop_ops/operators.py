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

from goshop_common.web.errors import ApiError

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="goshop-ops"'}


def is_operator(authorization: str, ops_token: str) -> bool:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not ops_token:
        return False
    # Constant time: the comparison must not tell a guesser how much was right.
    return hmac.compare_digest(token.strip().encode(), ops_token.encode())


def require_operator(request, **_kwargs) -> None:
    """A Cornice validator, listed first: a caller who is not an operator
    gets 401 before anything else is looked at."""
    if not is_operator(request.headers.get("Authorization", ""), request.registry.goshop_settings.ops_token):
        raise ApiError(401, "unauthorized", headers=CHALLENGE)
