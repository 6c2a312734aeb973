"""The payments read API: the caller's payment for one of their orders."""

from __future__ import annotations

import uuid

import colander

from goshop_common.errors import ApiError
from goshop_common.rest import Service, querystring_validator
from goshop_common.schemas import StrictString
from goshop_common.tokens import request_claims, require_access_token
from goshop_payments.payments import payments_for

payments = Service(name="payments", path="/v1/payments", description="Payments of one of my orders.")


class PaymentsQuery(colander.MappingSchema):
    order_id = colander.SchemaNode(StrictString(), missing_msg="order_id is required")


@payments.get(schema=PaymentsQuery(), validators=(require_access_token, querystring_validator))
def list_payments_view(request):
    claims = request_claims(request)
    try:
        order_id = uuid.UUID(request.validated["order_id"])
    except ValueError:
        raise ApiError(400, "order_id must be a UUID") from None
    found = payments_for(request.dbsession, order_id, uuid.UUID(claims["sub"]))
    return {"payments": [p.as_json() for p in found]}
