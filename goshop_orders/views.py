"""The orders API: create (idempotently), read one, read its status, list mine."""

from __future__ import annotations

import uuid

from goshop_common.auth.tokens import invalid_token, request_claims, require_access_token
from goshop_common.clock import utcnow
from goshop_common.db.session import own_transaction, request_bind
from goshop_common.web.errors import ApiError
from goshop_common.web.openapi import BEARER, SERVICE_UNAVAILABLE, Reply, error
from goshop_common.web.responses import json_response
from goshop_common.web.rest import JSON, Service, Tag, body_validator, querystring_validator
from goshop_orders.idempotency import (
    HEADER,
    IdempotencyKeys,
    KeyInFlight,
    KeyReused,
    request_fingerprint,
    valid_key,
)
from goshop_orders.orders import InvalidCursor, Orders
from goshop_orders.schemas import (
    IDEMPOTENCY_KEY,
    ORDER,
    ORDER_ID,
    ORDER_STATUS,
    ORDERS_PAGE,
    CreateOrderSchema,
    ListOrdersSchema,
)

ORDERS = Tag("orders", "The caller's orders: place one (idempotently), read one and where it stands, list them.")
orders = Service(name="orders", path="/v1/orders", description="Create an order; list mine.", tag=ORDERS)
order = Service(name="order", path="/v1/orders/{id}", description="One of my orders.", tag=ORDERS)
order_status = Service(
    name="order_status", path="/v1/orders/{id}/status", description="Where my order stands.", tag=ORDERS
)

NOT_FOUND = "order not found"

CREATED = Reply(
    "The order, created (or, for a retried Idempotency-Key, the first answer replayed).",
    ORDER,
    headers={"Location": "The order's URL.", "Idempotent-Replayed?": "true on a replayed answer."},
)
ONE_OF_MINE = {
    404: error(f"{NOT_FOUND}: no such order, or not the caller's"),
    503: SERVICE_UNAVAILABLE,
}


def _user_id(request) -> uuid.UUID:
    claims = request_claims(request)
    try:
        return uuid.UUID(claims["sub"])
    except ValueError:
        raise invalid_token() from None


@orders.post(
    schema=CreateOrderSchema(),
    validators=(require_access_token, body_validator),
    content_type=JSON,
    auth=BEARER,
    headers=(IDEMPOTENCY_KEY,),
    responses={
        201: CREATED,
        409: error("a request with this Idempotency-Key is in progress"),
        422: error(
            "Idempotency-Key was already used with a different request: a key is bound to its first "
            "request's body (see the Idempotency-Key header)"
        ),
        503: SERVICE_UNAVAILABLE,
    },
)
def create_order_view(request):
    user_id = _user_id(request)
    data = request.validated
    key = request.headers.get(HEADER)
    if key is not None and not valid_key(key):
        raise ApiError(400, "Idempotency-Key must be 1-255 visible ASCII characters")
    # Core, in a transaction of the view's own, not request.dbsession (the
    # hot write: docs/adr/0006), committed before the answer is made: a 201 is
    # never sent for an order that is not in the database. Raising rolls it
    # all back.
    with own_transaction(request_bind(request)) as db:
        if key is not None:
            keys = IdempotencyKeys(db, utcnow, request.registry.goshop_settings.idempotency_key_ttl)
            fingerprint = request_fingerprint({"amount_cents": data["amount_cents"], "currency": data["currency"]})
            try:
                replay = keys.begin(user_id, key, fingerprint)
            except KeyInFlight:
                raise ApiError(409, "a request with this Idempotency-Key is in progress") from None
            except KeyReused:
                raise ApiError(422, "Idempotency-Key was already used with a different request") from None
            if replay is not None:
                return json_response(
                    replay.body,
                    replay.status,
                    {"Location": f"/v1/orders/{replay.body['id']}", "Idempotent-Replayed": "true"},
                )
        created = Orders(db, utcnow).create(
            user_id, data["amount_cents"], data["currency"], request_id=getattr(request, "request_id", None)
        )
        body = created.as_json()
        if key is not None:
            keys.complete(user_id, key, fingerprint, 201, body)
    return json_response(body, 201, {"Location": f"/v1/orders/{created.id}"})


@orders.get(
    schema=ListOrdersSchema(),
    validators=(require_access_token, querystring_validator),
    auth=BEARER,
    responses={200: Reply("A page of my orders, newest first.", ORDERS_PAGE), 503: SERVICE_UNAVAILABLE},
)
def list_orders_view(request):
    user_id = _user_id(request)
    try:
        page, next_cursor = Orders(request.dbsession, utcnow).list_for_user(
            user_id, request.validated["limit"], request.validated["cursor"]
        )
    except InvalidCursor:
        raise ApiError(400, "invalid cursor") from None
    return {"orders": [o.as_json() for o in page], "next_cursor": next_cursor}


@order.get(auth=BEARER, path=(ORDER_ID,), responses={200: Reply("The order.", ORDER), **ONE_OF_MINE})
def get_order_view(request):
    found = Orders(request.dbsession, utcnow).get_for_user(request.matchdict["id"], _user_id(request))
    if found is None:
        raise ApiError(404, NOT_FOUND)
    return found.as_json()


@order_status.get(
    auth=BEARER, path=(ORDER_ID,), responses={200: Reply("Where the order stands.", ORDER_STATUS), **ONE_OF_MINE}
)
def get_order_status_view(request):
    found = Orders(request.dbsession, utcnow).get_for_user(request.matchdict["id"], _user_id(request))
    if found is None:
        raise ApiError(404, NOT_FOUND)
    return {"id": str(found.id), "status": found.status, "reason": found.reason}
