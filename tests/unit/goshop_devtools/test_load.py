"""make load's bounds and the invariants decided from Locust's report alone (no I/O)."""

from __future__ import annotations

import io
import socket

import pytest

from goshop_devtools.load.__main__ import (
    MAX_USERS,
    Refused,
    bounded,
    duration_seconds,
    loopback_host,
    print_stats,
    print_violations,
)
from goshop_devtools.load.invariants import status_violations


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.3.4.5:20237/",
        "http://[::1]:8080",
        "https://127.0.0.1",
        "http://localhost:8080",
    ],
)
def test_a_gateway_on_loopback_is_accepted(url):
    assert loopback_host(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.5:8080", "http://192.0.2.1:8080", "http://[2001:db8::1]:8080", "http://0.0.0.0:8080"],
)
def test_an_address_off_loopback_is_refused(url):
    with pytest.raises(Refused, match="loopback"):
        loopback_host(url)


def test_a_name_other_than_localhost_is_refused_without_being_looked_up(monkeypatch):
    def no_lookups(*_args, **_kwargs):
        raise AssertionError("looked up a name")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookups)
    with pytest.raises(Refused, match=r"refusing to load shop\.example\.com"):
        loopback_host("http://shop.example.com:8080")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1", "127.0.0.1:8080", "http://127.0.0.1:8080/v1/users"])
def test_anything_but_an_http_origin_is_refused(url):
    with pytest.raises(Refused):
        loopback_host(url)


@pytest.mark.parametrize(("text", "seconds"), [("60s", 60), ("60", 60), ("2m", 120), ("1m30s", 90), ("10m", 600)])
def test_durations_are_read_in_seconds_or_minutes(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["4s", "11m", "601", "soon", "", "1h"])
def test_a_duration_out_of_bounds_or_unreadable_is_refused(text):
    with pytest.raises(Refused, match="LOAD_TIME"):
        duration_seconds(text)


def test_more_customers_than_one_address_may_log_in_at_once_are_refused():
    assert bounded("LOAD_USERS", MAX_USERS, 1, MAX_USERS) == MAX_USERS
    with pytest.raises(Refused, match="LOAD_USERS=51"):
        bounded("LOAD_USERS", MAX_USERS + 1, 1, MAX_USERS)


def test_a_run_with_only_the_expected_answers_breaks_no_invariant():
    assert status_violations({"200": 40, "201": 12, "204": 2}, [], []) == []


def test_every_5xx_is_a_violation_counted_by_status():
    errors = [
        {"method": "POST", "name": "POST /v1/checkout", "error": "HTTP 502: upstream unavailable", "occurrences": 3},
        {"method": "GET", "name": "GET /v1/users/me", "error": "HTTP 500: internal error", "occurrences": 1},
    ]
    found = status_violations({"200": 10, "500": 1, "502": 3}, errors, [])
    assert found == ["no 5xx: the shop answered 1 x 500, 3 x 502"]


def test_an_unexpected_4xx_or_a_lost_answer_is_a_violation_of_its_own():
    errors = [
        {"method": "POST", "name": "POST /v1/users/login", "error": "HTTP 429: throttled", "occurrences": 2},
        {"method": "GET", "name": "GET /v1/users/me", "error": "no answer: ConnectionRefusedError", "occurrences": 1},
    ]
    found = status_violations({"200": 5, "429": 2, "0": 1}, errors, [])
    assert found == [
        "no other errors: POST /v1/users/login: HTTP 429: throttled (2 x)",
        "no other errors: GET /v1/users/me: no answer: ConnectionRefusedError (1 x)",
    ]


def test_a_replay_that_gave_another_order_is_a_violation():
    found = status_violations({"201": 2}, [], ["key load-1: order a, then b"])
    assert found == ["idempotency: a replayed checkout gave another order (key load-1: order a, then b)"]


def _entry(name: str, requests: int, failures: int = 0) -> dict:
    return {"name": name, "method": name.split()[0], "requests": requests, "failures": failures, "rps": requests / 10}


def test_the_figures_give_each_request_type_its_percentiles_then_throughput_and_error_rate():
    report = {
        "entries": [
            {**_entry("POST /v1/checkout", 40, 1), "p50_ms": 21, "p99_ms": 1200},
            {**_entry("GET /v1/users/me", 10), "p50_ms": 7, "p99_ms": 77},
        ],
        "total": {**_entry("all", 50, 1), "p50_ms": 14, "p99_ms": 1100},
        "statuses": {"200": 10, "201": 39, "502": 1},
    }
    out = io.StringIO()
    print_stats(report, 10, out)
    lines = out.getvalue().splitlines()
    assert lines[1].split() == ["request", "reqs", "fails", "req/s", "p50", "ms", "p99", "ms"]
    assert lines[2].split() == ["POST", "/v1/checkout", "40", "1", "4.0", "21", "1,200"]
    assert lines[3].split() == ["GET", "/v1/users/me", "10", "0", "1.0", "7", "77"]
    assert lines[4].split() == ["all", "50", "1", "5.0", "14", "1,100"]
    assert lines[6] == ("throughput 5.0 req/s over 10 s; error rate 2.00% (1 of 50); statuses 200: 10, 201: 39, 502: 1")
    assert "429" not in out.getvalue()


def test_throttled_logins_are_counted_and_explained():
    report = {
        "entries": [{**_entry("POST /v1/users/login", 4, 2), "p50_ms": 100, "p99_ms": 300}],
        "total": {**_entry("all", 4, 2), "p50_ms": 100, "p99_ms": 300},
        "statuses": {"200": 2, "429": 2},
    }
    out = io.StringIO()
    print_stats(report, 10, out)
    assert "2 x 429: the login throttle refused logins from this address" in out.getvalue()


def test_violations_past_the_first_fifty_are_counted_not_listed():
    out = io.StringIO()
    print_violations([f"v{n}" for n in range(53)], out)
    lines = out.getvalue().splitlines()
    assert lines[1] == "FAILED: 53 invariant violation(s):"
    assert lines[2:4] == ["  - v0", "  - v1"]
    assert lines[-2:] == ["  - v49", "  ... and 3 more"]
