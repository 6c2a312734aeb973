"""JwksKeyStore over real HTTP: the users app served by waitress on a real socket."""

import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import jwt
import pytest

from goshop_common.auth.jwks import MAX_JWKS_BYTES, JwksKeyStore
from goshop_common.auth.tokens import ACCESS, InvalidToken, TokenVerifier
from goshop_devtools.postgres import free_port
from tests.support import CannedServer, login, register, served


def jwks_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "goshop.jwks"]


def users_jwks(users_url) -> bytes:
    with urllib.request.urlopen(f"{users_url}/.well-known/jwks.json", timeout=5) as response:  # noqa: S310 (127.0.0.1)
        return response.read()


@pytest.fixture
def users_url(users_app) -> Iterator[str]:
    """The users app on 127.0.0.1 behind waitress, in a background thread."""
    with served(users_app) as url:
        yield url


@pytest.fixture
def canned_server() -> Iterator:
    """serve(status, body) -> the URL of a stdlib HTTP server giving that answer."""
    servers = []

    def serve(status: int, body: bytes) -> str:
        server = CannedServer(lambda _path: (status, body))
        servers.append(server)
        return f"{server.url}/.well-known/jwks.json"

    yield serve
    for server in servers:
        server.close()


@pytest.fixture
def access_token(users_app, seam_client) -> tuple[str, str]:
    """(user id, access token) from a real register and login on the users app."""
    app = seam_client(users_app, REMOTE_ADDR="192.0.2.20")
    user = register(app)
    return user["id"], login(app, user["email"])["access_token"]


def test_a_store_on_users_jwks_url_verifies_an_access_token_over_http(users_url, access_token):
    user_id, token = access_token
    store = JwksKeyStore(f"{users_url}/.well-known/jwks.json", "EdDSA")
    verifier = TokenVerifier("EdDSA", "goshop-users", store)
    claims = verifier.verify(token, ACCESS)
    assert claims["sub"] == user_id
    kid = jwt.get_unverified_header(token)["kid"]
    assert kid.startswith("dev-")
    assert store.get(kid) is not None


def test_a_token_with_a_kid_users_does_not_publish_is_refused_over_http(users_url, access_token):
    _, token = access_token
    verifier = TokenVerifier("EdDSA", "goshop-users", JwksKeyStore(f"{users_url}/.well-known/jwks.json", "EdDSA"))
    _, payload, signature = token.split(".")
    forged_header = jwt.utils.base64url_encode(b'{"alg":"EdDSA","typ":"JWT","kid":"not-users-key"}').decode()
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(f"{forged_header}.{payload}.{signature}", ACCESS)


def test_a_store_pointed_at_a_port_with_nothing_listening_returns_none_quickly(caplog):
    url = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    store = JwksKeyStore(url, "EdDSA", timeout=1.0)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="goshop.jwks"):
        assert store.get("any-kid") is None
    assert time.perf_counter() - started < 1.5
    [record] = jwks_warnings(caplog)
    assert record.url == url
    assert record.error == "URLError"


def test_a_server_that_never_answers_costs_one_timeout_not_a_hang(caplog):
    # A listening socket nobody accepts on: the kernel completes the
    # connection, the response never comes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/.well-known/jwks.json"
        store = JwksKeyStore(url, "EdDSA", timeout=0.5)
        results = []
        started = time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="goshop.jwks"):
            # In a thread, so a store that ignores its timeout fails the test
            # instead of hanging it (closing the socket then frees the thread).
            getter = threading.Thread(target=lambda: results.append(store.get("any-kid")), daemon=True)
            getter.start()
            getter.join(timeout=3)
            assert not getter.is_alive(), "the fetch ignored its timeout"
            elapsed = time.perf_counter() - started
            # Inside the refresh interval a second unknown kid does not wait again.
            again = time.perf_counter()
            assert store.get("another-kid") is None
            assert time.perf_counter() - again < 0.1
    assert results == [None]
    assert 0.4 < elapsed < 2.0
    [record] = jwks_warnings(caplog)
    assert record.error in ("TimeoutError", "URLError")


def test_a_non_200_answer_is_a_failed_fetch_logged_without_its_body(users_url, caplog):
    url = f"{users_url}/.well-known/no-such-document.json"
    store = JwksKeyStore(url, "EdDSA")
    with caplog.at_level(logging.WARNING, logger="goshop.jwks"):
        assert store.get("any-kid") is None
    [record] = jwks_warnings(caplog)
    assert record.error == "HTTPError"
    assert record.status == 404
    assert "not found" not in record.getMessage()


def test_json_that_is_not_a_key_set_is_a_failed_fetch(users_url, caplog):
    store = JwksKeyStore(f"{users_url}/openapi.json", "EdDSA")
    with caplog.at_level(logging.WARNING, logger="goshop.jwks"):
        assert store.get("any-kid") is None
    [record] = jwks_warnings(caplog)
    assert record.error == "JwksError"


def test_the_canned_server_serves_a_usable_jwks_with_200(users_url, canned_server):
    # The control for the two tests below: the same body with 200 is accepted.
    body = users_jwks(users_url)
    kid = json.loads(body)["keys"][0]["kid"]
    assert JwksKeyStore(canned_server(200, body), "EdDSA").get(kid) is not None


def test_a_2xx_other_than_200_is_a_failed_fetch(users_url, canned_server, caplog):
    body = users_jwks(users_url)
    kid = json.loads(body)["keys"][0]["kid"]
    store = JwksKeyStore(canned_server(203, body), "EdDSA")
    with caplog.at_level(logging.WARNING, logger="goshop.jwks"):
        assert store.get(kid) is None
    [record] = jwks_warnings(caplog)
    assert record.error == "JwksError"


def test_an_oversized_answer_is_a_failed_fetch(users_url, canned_server, caplog):
    document = json.loads(users_jwks(users_url))
    kid = document["keys"][0]["kid"]
    document["padding"] = "x" * MAX_JWKS_BYTES
    store = JwksKeyStore(canned_server(200, json.dumps(document).encode()), "EdDSA")
    with caplog.at_level(logging.WARNING, logger="goshop.jwks"):
        assert store.get(kid) is None
    [record] = jwks_warnings(caplog)
    assert record.error == "JwksError"
