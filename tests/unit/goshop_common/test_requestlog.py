import pytest

from goshop_common.web.requestlog import request_id_from


@pytest.mark.parametrize("value", ["abc", "trace-1.2:3_x", "A" * 128, "0af7651916cd43dd8448eb211c80319c"])
def test_a_sane_request_id_is_kept(value):
    assert request_id_from(value) == value


@pytest.mark.parametrize("value", [None, "", "A" * 129, "a b", "a\nb", "<x>", "é"])
def test_anything_else_gets_a_fresh_id(value):
    generated = request_id_from(value)
    assert generated != value
    assert len(generated) == 32
    assert request_id_from(value) != generated  # fresh each time
