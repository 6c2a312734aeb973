"""The payments read API: the caller's payment for one of their orders."""

from __future__ import annotations

import uuid

import colander

from goshop_common.auth.tokens import request_claims, require_access_token
from goshop_common.web.errors import ApiError
from goshop_common.web.openapi import BEARER, SERVICE_UNAVAILABLE, Reply
from goshop_common.web.rest import Service, Tag, querystring_validator
from goshop_common.web.schemas import UUID_REGEX, Pattern, StrictString, body, field, list_of
from goshop_payments.models import STATUSES
from goshop_payments.payments import payments_for

PAYMENTS_TAG = Tag("payments", "The payments of the caller's orders, as the payments service decided them.")
payments = Service(name="payments", path="/v1/payments", description="Payments of one of my orders.", tag=PAYMENTS_TAG)


class PaymentsQuery(colander.MappingSchema):
    """``?order_id=``: required, a UUID as RFC 9562 writes it."""

    order_id = colander.SchemaNode(
        StrictString(), missing_msg="order_id is required", validator=Pattern(UUID_REGEX, "order_id must be a UUID")
    )
    order_id.type_error_msg = "order_id is required"


PAYMENTS = body(
    "payments",
    list_of(
        "payments",
        body(
            "payment",
            field("id", format="uuid"),
            field("order_id", format="uuid"),
            field("amount_cents", colander.Integer(), minimum=1),
            field("currency", pattern="^[A-Z]{3}$"),
            field("status", enum=list(STATUSES)),
            field("reason", nullable=True),
            field("created_at", format="date-time"),
            field("refunded_at", format="date-time", nullable=True),
            component="Payment",
        ),
    ),
    component="PaymentList",
)


@payments.get(
    schema=PaymentsQuery(),
    validators=(require_access_token, querystring_validator),
    auth=BEARER,
    responses={
        200: Reply("The order's payments: none yet, or the one that decided it.", PAYMENTS),
        503: SERVICE_UNAVAILABLE,
    },
)
def list_payments_view(request):
    """The caller's payments for ``order_id``. An order of someone else's
    shows none: the same answer as an order not paid for yet."""
    claims = request_claims(request)
    try:
        order_id = uuid.UUID(request.validated["order_id"])
    except ValueError:
        raise ApiError(400, "order_id must be a UUID") from None
    found = payments_for(request.dbsession, order_id, uuid.UUID(claims["sub"]))
    return {"payments": [p.as_json() for p in found]}
