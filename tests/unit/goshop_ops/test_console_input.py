"""What an operator types or pastes into the console, read as they meant it:
an order id however it was pasted, an email as the users service stores it,
and a token that is not the operator's refused with the reason."""

import uuid

import jwt
import pytest

from goshop_ops.console.search import email_of, order_id_of
from goshop_ops.console.sessions import CUSTOMER_TOKEN, NO_TOKEN, WRONG_TOKEN, looks_like_access_token, refusal

ORDER = uuid.UUID("0b9a3c1e-5d2f-4e8a-9c7b-1f2e3d4c5b6a")
OPS_TOKEN = "operator-token-0123456789abcdef-0123"


@pytest.mark.parametrize(
    "pasted",
    [
        str(ORDER),
        f"  {ORDER}  ",
        str(ORDER).upper(),
        f"\t{str(ORDER).upper()}\n",
        f"{{{ORDER}}}",
        ORDER.hex,
        "0b9a3c1e-5d2f-4e8a-9c7b- 1f2e3d4c5b6a",
    ],
    ids=["plain", "spaces", "upper", "tab-upper-newline", "braces", "bare-hex", "inner-space"],
)
def test_an_order_id_is_found_however_it_was_pasted(pasted):
    assert order_id_of(pasted) == ORDER


@pytest.mark.parametrize("text", ["", "order 42", "0b9a3c1e-5d2f-4e8a-9c7b", "g" * 32, str(ORDER) + "00", "42"])
def test_what_is_not_an_order_id_is_none(text):
    assert order_id_of(text) is None


def test_an_email_is_read_trimmed_and_in_lower_case():
    assert email_of("  Ann.Smith@Example.COM ") == "ann.smith@example.com"
    assert [email_of(t) for t in ("ann", "@example.com", "ann@", "a b@example.com")] == [None] * 4


def test_the_operator_token_signs_in_and_nothing_else_does():
    assert refusal(OPS_TOKEN, OPS_TOKEN) is None
    assert refusal(f"  {OPS_TOKEN} ", OPS_TOKEN) is None
    assert refusal("", OPS_TOKEN) == NO_TOKEN
    assert refusal(OPS_TOKEN[:-1], OPS_TOKEN) == WRONG_TOKEN


def test_a_customers_access_token_is_refused_as_one():
    access = jwt.encode({"sub": str(uuid.uuid4()), "typ": "access"}, "k" * 32, algorithm="HS256")
    assert looks_like_access_token(access)
    assert refusal(access, OPS_TOKEN) == CUSTOMER_TOKEN
    assert not looks_like_access_token("a.b.c")
    assert not looks_like_access_token(OPS_TOKEN)
