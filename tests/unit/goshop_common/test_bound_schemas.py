"""Request schemas are bound to their app's settings once, not per request."""

import dataclasses
from types import SimpleNamespace

import colander
import pytest

from goshop_common.web.rest import _bound
from goshop_devtools.settings import settings_of
from goshop_orders.schemas import CreateOrderSchema


def request_of(settings):
    return SimpleNamespace(registry=SimpleNamespace(goshop_settings=settings))


def test_a_schema_is_bound_once_per_app_settings():
    settings = settings_of({}, environ={}, service="orders")
    schema = CreateOrderSchema()
    assert _bound(schema, request_of(settings)) is _bound(schema, request_of(settings))


def test_each_app_reads_its_own_settings_through_the_bound_schema():
    strict = settings_of({}, environ={"GOSHOP_ORDER_MAX_AMOUNT_CENTS": "100"}, service="orders")
    loose = dataclasses.replace(strict, order_max_amount_cents=10_000)
    schema = CreateOrderSchema()
    body = {"amount_cents": 500, "currency": "RUB"}
    assert _bound(schema, request_of(loose)).deserialize(body)["amount_cents"] == 500
    with pytest.raises(colander.Invalid):
        _bound(schema, request_of(strict)).deserialize(body)
