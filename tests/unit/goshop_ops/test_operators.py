"""Who counts as an operator: exactly the bearer of the ops token."""

import pytest

from goshop_ops.operators import NO_CREDENTIALS, WRONG_TOKEN, is_operator

TOKEN = "ops-token-0123456789abcdef0123456789"


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer  {TOKEN} "])
def test_the_ops_token_as_a_bearer_token_is_an_operator(header):
    assert is_operator(header, TOKEN)


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", "Bearer é"],
)
def test_anything_else_is_not(header):
    assert not is_operator(header, TOKEN)


def test_an_empty_configured_token_lets_nobody_in():
    assert not is_operator("Bearer ", "")
    assert not is_operator("Bearer x", "")


def test_the_ops_challenges_name_the_realm_and_say_no_error_without_a_token():
    assert NO_CREDENTIALS == 'Bearer realm="goshop-ops"'
    assert WRONG_TOKEN == (
        'Bearer realm="goshop-ops", error="invalid_token", error_description="the operator token is invalid"'
    )
