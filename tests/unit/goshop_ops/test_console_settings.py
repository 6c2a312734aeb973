"""The ops console's settings as an operator writes them: the origin it is
served at, and the processes its health strip asks, each refused with a
message when it is not what it must be."""

from __future__ import annotations

import pytest

from goshop_ops.settings import named_urls, origin


def test_an_origin_is_kept_as_a_browser_sends_it():
    assert origin(" HTTPS://Ops.Example.com:8443 ") == "https://ops.example.com:8443"


@pytest.mark.parametrize("raw", ["https://ops.example.com/console", "https://user:pw@ops.example.com"])
def test_an_origin_with_a_path_or_credentials_is_refused(raw):
    with pytest.raises(ValueError, match="must be an origin"):
        origin(raw)


def test_named_urls_are_read_in_order_and_blank_entries_skipped():
    assert named_urls(" users=http://127.0.0.1:9001/ready, ,orders = http://127.0.0.1:9002/ready ") == (
        ("users", "http://127.0.0.1:9001/ready"),
        ("orders", "http://127.0.0.1:9002/ready"),
    )
    assert named_urls("") == ()


@pytest.mark.parametrize("raw", ["http://127.0.0.1:9001/ready", "=http://127.0.0.1:9001/ready"])
def test_an_entry_without_a_name_is_refused(raw):
    with pytest.raises(ValueError, match="each entry must be name=url"):
        named_urls(raw)


def test_an_entry_whose_url_is_not_http_is_refused():
    with pytest.raises(ValueError, match=r"must be http\(s\)://"):
        named_urls("users=ftp://127.0.0.1/ready")
