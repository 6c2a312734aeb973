"""goshop_common.outgoing.fetch against a real stdlib HTTP server on 127.0.0.1."""

import urllib.error

import pytest

from goshop_common import outgoing
from tests.support import CannedServer


@pytest.fixture
def server():
    answers = {}
    canned = CannedServer(lambda path: answers.get(path, (404, b"no such page")))
    canned.answers = answers
    yield canned
    canned.close()


def test_a_200_answer_is_its_body(server):
    server.answers["/doc"] = (200, b'{"ok": true}')
    assert outgoing.fetch(f"{server.url}/doc", timeout=2, max_bytes=100) == b'{"ok": true}'


def test_an_answer_of_exactly_max_bytes_is_read_and_one_more_is_too_large(server):
    server.answers["/ten"] = (200, b"x" * 10)
    assert outgoing.fetch(f"{server.url}/ten", timeout=2, max_bytes=10) == b"x" * 10
    with pytest.raises(outgoing.TooLarge):
        outgoing.fetch(f"{server.url}/ten", timeout=2, max_bytes=9)


def test_a_2xx_other_than_200_is_unexpected(server):
    server.answers["/partial"] = (203, b"{}")
    with pytest.raises(outgoing.UnexpectedAnswer) as caught:
        outgoing.fetch(f"{server.url}/partial", timeout=2, max_bytes=100)
    assert caught.value.status == 203


def test_a_redirect_is_not_followed(server):
    server.answers["/moved"] = (302, b"")
    with pytest.raises(urllib.error.HTTPError) as caught:
        outgoing.fetch(f"{server.url}/moved", timeout=2, max_bytes=100)
    assert caught.value.code == 302


def test_an_error_status_is_an_http_error(server):
    with pytest.raises(urllib.error.HTTPError) as caught:
        outgoing.fetch(f"{server.url}/absent", timeout=2, max_bytes=100)
    assert caught.value.code == 404


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "data:,hello", "http://"])
def test_only_http_urls_with_a_host_are_fetched(url):
    with pytest.raises(ValueError, match="http"):
        outgoing.fetch(url, timeout=1, max_bytes=100)
