import colander
import pytest

from goshop_common.web.schemas import QueryInteger, StrictString


def _node(typ):
    return colander.SchemaNode(typ, name="field")


@pytest.mark.parametrize("value", ["\ud800", "abc\udfff", "\udbff\udc00x\ud800"])
def test_strings_with_a_lone_surrogate_are_invalid(value):
    with pytest.raises(colander.Invalid):
        _node(StrictString()).deserialize(value)


def test_characters_outside_the_basic_plane_are_valid():
    assert _node(StrictString()).deserialize("\U0001f600") == "\U0001f600"


@pytest.mark.parametrize("value", [" 7", "7_0", "\u0667", "+7", "7.0", ""])
def test_query_integers_are_ascii_digits_only(value):
    with pytest.raises(colander.Invalid):
        _node(QueryInteger()).deserialize(value)


def test_query_integers_parse_digits():
    assert _node(QueryInteger()).deserialize("20") == 20
