import json
import logging

import pytest

from goshop_common.observability.logs import JsonFormatter
from tests.support import PASSWORD, bearer, login, register


@pytest.fixture
def request_lines(caplog):
    """The JSON lines the request logger wrote, as the formatter renders them."""
    caplog.set_level(logging.INFO, logger="goshop.request")
    formatter = JsonFormatter()

    def lines():
        return [json.loads(formatter.format(r)) for r in caplog.records if r.name == "goshop.request"]

    return lines


def test_one_json_line_per_request_with_method_path_status_duration_and_request_id(testapp, request_lines):
    response = testapp.get("/live")
    [line] = request_lines()
    assert line["method"] == "GET"
    assert line["path"] == "/live"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["request_id"] == response.headers["X-Request-ID"]


def test_a_clients_request_id_is_kept_and_echoed(testapp, request_lines):
    response = testapp.get("/live", headers={"X-Request-ID": "trace-abc.123"})
    assert response.headers["X-Request-ID"] == "trace-abc.123"
    assert request_lines()[0]["request_id"] == "trace-abc.123"


@pytest.mark.parametrize("bad", ["", "x" * 200, "has space", "new\nline", "<script>"])
def test_an_unusable_request_id_is_replaced(testapp, bad):
    response = testapp.get("/live", headers={"X-Request-ID": bad})
    echoed = response.headers["X-Request-ID"]
    assert echoed != bad
    assert len(echoed) == 32


def test_error_responses_are_logged_with_their_status(testapp, request_lines):
    testapp.get("/nope", status=404)
    assert request_lines()[0]["status"] == 404


def test_the_user_id_is_logged_once_a_token_is_verified(testapp, request_lines):
    user = register(testapp)
    pair = login(testapp, user["email"])
    testapp.get("/v1/users/me", headers=bearer(pair["access_token"]))
    assert request_lines()[-1]["user_id"] == user["id"]


def test_passwords_and_tokens_never_reach_the_logs(testapp, caplog):
    caplog.set_level(logging.DEBUG)
    user = register(testapp)
    pair = login(testapp, user["email"])
    testapp.post_json("/v1/users/login", {"email": user["email"], "password": "wrong"}, status=401)
    testapp.get("/v1/users/me", headers=bearer(pair["access_token"]))
    testapp.post_json("/v1/users/refresh", {"refresh_token": pair["refresh_token"]})
    testapp.get("/v1/users/me?token=" + pair["access_token"], headers=bearer(pair["access_token"]))
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(record) for record in caplog.records)
    assert text  # something was logged
    for secret in (PASSWORD, "wrong", pair["access_token"], pair["refresh_token"]):
        assert secret not in text
