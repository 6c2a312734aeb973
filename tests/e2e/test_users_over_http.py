"""The users service as deployed: development.ini served by waitress in its own
process, driven over a socket."""

import json

import pytest

from goshop_devtools.postgres import free_port
from tests.e2e.conftest import ROOT, Http, spawn, stop, wait_for


@pytest.fixture
def users_server(child_env, tmp_path, clean_db):
    port = free_port()
    log_path = tmp_path / "users.log"
    process = spawn(
        [
            "-m",
            "goshop_common.web.serve",
            str(ROOT / "goshop_users" / "development.ini"),
            "--port",
            str(port),
            "--metrics-port",
            str(free_port()),
        ],
        child_env,
        log_path,
    )
    try:
        wait_for(port, process=process)
        yield Http(port), process, log_path
    finally:
        stop(process)


def test_the_seed_walkthrough_over_a_socket(users_server):
    http, _process, log_path = users_server
    password = "RustIsAPoison2013!"
    status, _, body = http.request(
        "POST", "/v1/users/register", {"email": "Torvalds@Linux-Foundation.org", "password": password}
    )
    assert status == 201
    assert body["email"] == "torvalds@linux-foundation.org"

    status, _, tokens = http.request(
        "POST",
        "/v1/users/login",
        {"email": "torvalds@linux-foundation.org", "password": password},
        headers={"X-Request-ID": "walkthrough-1"},
    )
    assert status == 200
    assert tokens["expires_in"] == 7200

    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    status, headers, me = http.request("GET", "/v1/users/me", headers=auth)
    assert status == 200
    assert me["uid"] == body["id"]
    assert headers["X-Request-ID"]

    status, _, rotated = http.request("POST", "/v1/users/refresh", {"refresh_token": tokens["refresh_token"]})
    assert status == 200
    status, _, _second = http.request("POST", "/v1/users/login", {"email": body["email"], "password": password})
    assert status == 200

    status, _, revoked = http.request("POST", "/v1/users/logout_all", headers=auth)
    assert (status, revoked) == (200, {"revoked": 2})
    status, _, _ = http.request("POST", "/v1/users/refresh", {"refresh_token": rotated["refresh_token"]})
    assert status == 401

    status, _, ping = http.request("GET", "/v1/db/ping")
    assert status == 200
    assert ping["status"] == "ok"

    log = log_path.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("logger") == "goshop.request"]
    assert any(line["request_id"] == "walkthrough-1" and line["path"] == "/v1/users/login" for line in requests)
    assert any(line.get("user_id") == body["id"] for line in requests)
    for secret in (password, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in log


def test_waitress_refuses_a_huge_chunked_body_with_json_413(users_server):
    http, _process, _log = users_server
    import http.client as client

    connection = client.HTTPConnection("127.0.0.1", http.port, timeout=10)
    connection.putrequest("POST", "/v1/users/register")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    chunk = b"a" * 65536
    for _ in range(20):  # 1.25 MiB
        connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    connection.send(b"0\r\n\r\n")
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read()) == {"error": "request body too large"}
    connection.close()


def test_sigterm_stops_the_server_cleanly(users_server):
    _http, process, _log = users_server
    assert stop(process) == 0
