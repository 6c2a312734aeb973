"""goshop's body validator against the Cornice validator it replaced: for the
same request, the same errors (location, name, message) and the same
validated values, bad bodies included."""

from __future__ import annotations

import colander
import pytest
from cornice.errors import Errors
from cornice.validators import colander_body_validator
from pyramid.request import Request

from goshop_common.web.rest import _bound, body_validator
from goshop_gateway.schemas import CheckoutSchema


class Nested(colander.MappingSchema):
    lines = colander.SchemaNode(
        colander.Sequence(), colander.SchemaNode(colander.Mapping(), CheckoutSchema()), validator=colander.Length(1)
    )


CASES = {
    "valid": (b'{"amount_cents": 100, "currency": "RUB"}', "application/json"),
    "a field wrong, one missing": (b'{"amount_cents": -1}', "application/json"),
    "unknown fields": (b'{"amount_cents": 100, "currency": "RUB", "extra": 1}', "application/json"),
    "not JSON": (b'{"amount_cents": ', "application/json"),
    "a JSON string": (b'"just text"', "application/json"),
    "a JSON array": (b"[1, 2]", "application/json"),
    "empty, JSON": (b"", "application/json"),
    "empty, no type": (b"", None),
    "empty, a form type": (b"", "application/x-www-form-urlencoded"),
    "empty, text": (b"", "text/plain"),
    "JSON with charset": (b'{"amount_cents": 5, "currency": "USD"}', "application/json; charset=utf-8"),
}


def request_for(registry, body: bytes, content_type: str | None) -> Request:
    request = Request.blank("/v1/checkout", method="POST", body=body)
    if content_type is None:
        request.environ.pop("CONTENT_TYPE", None)
    else:
        request.content_type = content_type
    request.registry = registry
    request.errors = Errors()
    request.validated = {}
    return request


@pytest.mark.parametrize("schema", [CheckoutSchema(), Nested()], ids=["flat", "nested"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_body_validator_says_what_cornices_said(service_settings, case, schema):
    from goshop_gateway import make_app

    registry = make_app(service_settings).registry
    body, content_type = CASES[case]
    ours, cornices = request_for(registry, body, content_type), request_for(registry, body, content_type)
    body_validator(ours, schema=schema)
    colander_body_validator(cornices, schema=_bound(schema, cornices))
    assert list(ours.errors) == list(cornices.errors)
    assert (ours.errors.status, ours.validated) == (cornices.errors.status, cornices.validated)
