"""Only operators, holding the ops token, may read timelines or ask for
explanations; everything else is refused before any order is looked at."""

import uuid

import pytest

from goshop_ops.operators import NO_CREDENTIALS, WRONG_TOKEN
from tests.integration.goshop_ops.conftest import OPERATOR, OPS_TOKEN, create_order
from tests.support import bearer


@pytest.fixture
def order(orders_client, customer):
    return create_order(orders_client, customer, 19901)


def _calls(order_id):
    return [
        ("GET", f"/v1/ops/orders/{order_id}/timeline"),
        ("POST", f"/v1/ops/orders/{order_id}/explain"),
    ]


def _call(client, method, path, headers, status, body=None):
    if method == "GET":
        return client.get(path, headers=headers, status=status)
    return client.post_json(path, body if body is not None else {}, headers=headers, status=status)


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, NO_CREDENTIALS),
        (bearer("wrong-token"), WRONG_TOKEN),
        (bearer(OPS_TOKEN[:-1]), WRONG_TOKEN),
        (bearer(OPS_TOKEN + "x"), WRONG_TOKEN),
        ({"Authorization": OPS_TOKEN}, NO_CREDENTIALS),
        ({"Authorization": f"Basic {OPS_TOKEN}"}, NO_CREDENTIALS),
    ],
    ids=["anonymous", "wrong", "prefix", "longer", "no-scheme", "basic"],
)
def test_callers_without_the_ops_token_are_unauthorized(ops_client, order, headers, challenge):
    for method, path in _calls(order["id"]):
        response = _call(ops_client, method, path, headers, 401)
        assert response.json == {"error": "unauthorized"}
        assert response.headers["WWW-Authenticate"] == challenge


def test_a_customers_access_token_is_not_an_operator_credential(ops_client, order, customer):
    for method, path in _calls(order["id"]):
        response = _call(ops_client, method, path, customer["headers"], 401)
        assert (response.json, response.headers["WWW-Authenticate"]) == ({"error": "unauthorized"}, WRONG_TOKEN)


def test_the_operator_reads_any_customers_order(ops_client, order):
    assert ops_client.get(f"/v1/ops/orders/{order['id']}/timeline", headers=OPERATOR).json["order"]["id"] == order["id"]


def test_a_stranger_learns_nothing_about_which_orders_exist(ops_client, order):
    for order_id in (order["id"], uuid.uuid4(), "not-a-uuid"):
        for method, path in _calls(order_id):
            assert _call(ops_client, method, path, {}, 401).json == {"error": "unauthorized"}


def test_a_stranger_is_refused_before_the_body_is_checked(ops_client, order):
    response = ops_client.post_json(f"/v1/ops/orders/{order['id']}/explain", {"question": 42}, status=401)
    assert response.json == {"error": "unauthorized"}


@pytest.mark.parametrize("order_id", [str(uuid.uuid4()), "not-a-uuid", "1234", "%E2%9C%93"])
def test_an_unknown_or_malformed_order_id_is_not_found(ops_client, order_id):
    for method, path in _calls(order_id):
        assert _call(ops_client, method, path, OPERATOR, 404).json == {"error": "order not found"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"question": "x" * 2001}, "question must be a string of at most 2000 characters"),
        ({"question": 42}, "question must be a string of at most 2000 characters"),
        ({"question": ["why?"]}, "question must be a string of at most 2000 characters"),
        ({"question": "why?", "model": "gpt"}, "unknown field: only question is accepted"),
        (["why?"], "request body must be a JSON object"),
    ],
    ids=["too-long", "number", "list", "unknown-key", "array"],
)
def test_a_bad_question_is_400(ops_client, order, body, message):
    response = ops_client.post_json(f"/v1/ops/orders/{order['id']}/explain", body, headers=OPERATOR, status=400)
    assert response.json["error"] == message


def test_a_question_of_exactly_the_limit_is_answered(ops_client, order):
    body = ops_client.post_json(
        f"/v1/ops/orders/{order['id']}/explain", {"question": "x" * 2000}, headers=OPERATOR
    ).json
    assert body["source"] == "rules"


def test_invalid_json_is_400(ops_client, order):
    response = ops_client.post(
        f"/v1/ops/orders/{order['id']}/explain",
        "{nope",
        headers={**OPERATOR, "Content-Type": "application/json"},
        status=400,
    )
    assert response.json["error"] == "invalid json"


def test_the_markdown_timeline_of_an_unknown_order_is_a_json_404(ops_client):
    response = ops_client.get(
        "/v1/ops/orders/00000000-0000-4000-8000-000000000000/timeline.md", headers=OPERATOR, status=404
    )
    assert response.json == {"error": "order not found"}
