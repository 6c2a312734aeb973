"""Input that is not text (lone surrogates, undecodable percent-encoding) is
the client's mistake: 400 in the envelope, never a 500 or an ERROR log.

The bodies spell a lone surrogate as JSON allows ("\\ud800"): valid JSON, not
valid Unicode."""

from __future__ import annotations

import logging

import pytest


def _post_raw(testapp, path: str, body: str):
    return testapp.post(path, body.encode(), content_type="application/json", expect_errors=True)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/users/register", '{"email": "a@example.com", "password": "\\ud800"}'),
        ("/v1/users/register", '{"email": "\\ud800@example.com", "password": "correct horse battery"}'),
        ("/v1/users/login", '{"email": "a@example.com", "password": "\\ud800"}'),
        ("/v1/users/refresh", '{"refresh_token": "\\ud800"}'),
        ("/v1/users/logout", '{"refresh_token": "\\ud800"}'),
    ],
)
def test_lone_surrogate_in_any_string_field_is_400(testapp, caplog, path, body):
    with caplog.at_level(logging.INFO):
        response = _post_raw(testapp, path, body)
    assert response.status_int == 400
    assert set(response.json) == {"error", "details"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_lone_surrogate_in_password_is_400(testapp):
    response = _post_raw(testapp, "/v1/users/register", '{"email": "a@example.com", "password": "abcdefgh\\udfff"}')
    assert response.status_int == 400
    assert response.json["error"]


@pytest.mark.parametrize("url", ["/v1/users/%ED%A0%80", "/%FF", "/v1/users/register%C3"])
def test_undecodable_percent_encoding_is_400_without_a_traceback(testapp, caplog, url):
    with caplog.at_level(logging.INFO):
        response = testapp.get(url, expect_errors=True)
    assert response.status_int == 400
    assert response.json == {"error": "invalid url encoding"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
