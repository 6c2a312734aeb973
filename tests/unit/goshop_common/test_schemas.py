import colander
import pytest

from goshop_common.web.schemas import email_node, normalise_email, strict_string_node


class Example(colander.MappingSchema):
    email = email_node()
    name = strict_string_node("name", "name is required")


@pytest.mark.parametrize("value", [1, 1.5, True, [], {}, ["x"], None])
def test_strict_strings_refuse_anything_but_a_string(value):
    with pytest.raises(colander.Invalid) as error:
        Example().deserialize({"email": "a@b.io", "name": value})
    assert error.value.asdict() == {"name": "name is required"}


def test_strict_strings_refuse_nul_characters():
    with pytest.raises(colander.Invalid):
        Example().deserialize({"email": "a@b.io", "name": "a\x00b"})


def test_email_is_trimmed_and_lower_cased():
    assert Example().deserialize({"email": "  Mixed@Example.COM ", "name": "x"})["email"] == "mixed@example.com"
    assert normalise_email(" A@B.io ") == "a@b.io"


@pytest.mark.parametrize("email", ["plain", "a@", "@b.io", "a@b", "a b@c.io", "a@" + "b" * 250 + ".io"])
def test_malformed_or_overlong_emails_are_invalid(email):
    with pytest.raises(colander.Invalid) as error:
        Example().deserialize({"email": email, "name": "x"})
    assert error.value.asdict() == {"email": "invalid email"}
