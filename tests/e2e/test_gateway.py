"""The whole shop driven through the gateway only, each service its own process."""

from __future__ import annotations

import datetime as dt
import http.client
import os
import re
import subprocess
import time
import uuid

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.e2e.conftest import ROOT, Http, wait_for
from tests.support import EXPIRED, INVALID, NO_TOKEN, SESSION_ENDED


@pytest.fixture(scope="module")
def gw(stack):
    return Http(stack.gateway)


def sign_up(gw: Http) -> dict:
    account = {"email": f"gw-{uuid.uuid4().hex[:10]}@example.com", "password": "long enough password"}
    status, _, user = gw.request("POST", "/v1/users/register", account)
    assert status == 201, user
    status, _, tokens = gw.request("POST", "/v1/users/login", account)
    assert status == 200, tokens
    return {**user, **tokens, "auth": {"Authorization": f"Bearer {tokens['access_token']}"}}


def checkout(gw: Http, customer: dict, amount: int, key: str | None = None, request_id: str | None = None):
    headers = dict(customer["auth"])
    if key:
        headers["Idempotency-Key"] = key
    if request_id:
        headers["X-Request-ID"] = request_id
    return gw.request("POST", "/v1/checkout", {"amount_cents": amount, "currency": "RUB"}, headers=headers)


def settle(gw: Http, customer: dict, order_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = gw.request("GET", f"/v1/orders/{order_id}/status", headers=customer["auth"])
        assert status == 200, body
        if body["status"] != "new" or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_sign_up_check_out_and_watch_the_order_get_paid(gw):
    customer = sign_up(gw)
    status, _, me = gw.request("GET", "/v1/users/me", headers=customer["auth"])
    assert (status, me["uid"]) == (200, customer["id"])
    status, headers, order = checkout(gw, customer, 19901)
    assert status == 201, order
    # The gateway's own URL, never the orders service's behind it.
    assert headers["Location"] == f"http://127.0.0.1:{gw.port}/v1/orders/{order['id']}"
    assert settle(gw, customer, order["id"]) == {"id": order["id"], "status": "paid", "reason": None}
    status, _, listing = gw.request("GET", "/v1/orders", headers=customer["auth"])
    assert [o["id"] for o in listing["orders"]] == [order["id"]]
    status, _, payments = gw.request("GET", f"/v1/payments?order_id={order['id']}", headers=customer["auth"])
    assert [p["status"] for p in payments["payments"]] == ["confirmed"]


def test_location_starts_with_the_public_url_whatever_host_a_client_sends(gw):
    customer = sign_up(gw)
    headers = {**customer["auth"], "Host": "evil.example:1234"}
    status, answer, order = gw.request("POST", "/v1/checkout", {"amount_cents": 501}, headers=headers)
    assert status == 201, order
    assert answer["Location"] == f"http://127.0.0.1:{gw.port}/v1/orders/{order['id']}"
    account = {"email": f"gw-{uuid.uuid4().hex[:10]}@example.com", "password": "long enough password"}
    status, answer, _ = gw.request("POST", "/v1/users/register", account, headers={"Host": "evil.example"})
    assert (status, answer["Location"]) == (201, f"http://127.0.0.1:{gw.port}/v1/users/me")


def test_head_through_the_gateway_says_the_length_get_answers(gw):
    customer = sign_up(gw)
    connection = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        connection.request("GET", "/v1/users/me", headers=customer["auth"])
        got = connection.getresponse()
        body = got.read()
        connection.request("HEAD", "/v1/users/me", headers=customer["auth"])
        head = connection.getresponse()
        assert head.read() == b""
    finally:
        connection.close()
    assert (head.status, head.getheader("Content-Length")) == (200, str(len(body)))
    assert len(body) > 0


def test_an_amount_divisible_by_five_ends_cancelled(gw):
    customer = sign_up(gw)
    _, _, order = checkout(gw, customer, 19900)
    assert settle(gw, customer, order["id"]) == {
        "id": order["id"],
        "status": "cancelled",
        "reason": "insufficient_funds",
    }


def test_an_idempotent_checkout_retry_returns_the_same_order(gw):
    customer = sign_up(gw)
    first = checkout(gw, customer, 501, key="retry-1")
    again = checkout(gw, customer, 501, key="retry-1")
    assert first[0] == again[0] == 201
    assert again[2]["id"] == first[2]["id"]
    assert again[1]["Idempotent-Replayed"] == "true"
    assert checkout(gw, customer, 502, key="retry-1")[0] == 422
    _, _, listing = gw.request("GET", "/v1/orders", headers=customer["auth"])
    assert len(listing["orders"]) == 1


def test_after_logout_all_the_old_refresh_token_fails(gw):
    customer = sign_up(gw)
    status, _, body = gw.request("POST", "/v1/users/logout_all", headers=customer["auth"])
    assert (status, body) == (200, {"revoked": 1})
    status, _, body = gw.request("POST", "/v1/users/refresh", {"refresh_token": customer["refresh_token"]})
    assert (status, body) == (401, {"error": "invalid token"})


def _forged_tokens(customer: dict) -> dict[str, str]:
    token = customer["access_token"]
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    head, _payload, signature = token.split(".")
    other_key = ed25519.Ed25519PrivateKey.generate()
    now = dt.datetime.now(dt.UTC)
    expired = {**claims, "iat": now - dt.timedelta(hours=3), "exp": now - dt.timedelta(hours=1)}
    tampered = jwt.utils.base64url_encode(
        jwt.api_jws.json.dumps({**claims, "sub": str(uuid.uuid4())}).encode()
    ).decode()
    return {
        "tampered": f"{head}.{tampered}.{signature}",
        "expired-other-key": jwt.encode(expired, other_key, algorithm="EdDSA", headers={"kid": header["kid"]}),
        "other-key": jwt.encode(claims, other_key, algorithm="EdDSA", headers={"kid": header["kid"]}),
        "alg-none": jwt.encode(claims, None, algorithm="none"),
        "refresh-as-access": customer["refresh_token"],
        "garbage": "abc.def.ghi",
    }


def test_forged_tokens_are_refused_at_the_edge_before_any_upstream_call(gw, stack):
    customer = sign_up(gw)
    for name, token in _forged_tokens(customer).items():
        request_id = f"forged-{name}-{uuid.uuid4().hex[:6]}"
        for method, path in (("GET", "/v1/users/me"), ("POST", "/v1/checkout"), ("GET", "/v1/orders")):
            body = {"amount_cents": 100} if method == "POST" else None
            headers = {"Authorization": f"Bearer {token}", "X-Request-ID": request_id}
            status, answer_headers, answer = gw.request(method, path, body, headers=headers)
            assert (status, answer) == (401, {"error": "invalid token"}), (name, path)
            assert answer_headers["WWW-Authenticate"] == INVALID, (name, path)
        for upstream in ("users", "orders"):
            assert request_id not in stack.log(upstream), f"{name} reached {upstream}"


def test_an_expired_token_signed_by_users_is_refused(gw, users_app):
    customer = sign_up(gw)
    claims = jwt.decode(customer["access_token"], options={"verify_signature": False})
    key = users_app.registry.signing_key
    now = dt.datetime.now(dt.UTC)
    expired = jwt.encode(
        {**claims, "iat": now - dt.timedelta(hours=3), "exp": now - dt.timedelta(hours=1)},
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid},
    )
    status, headers, body = gw.request("GET", "/v1/users/me", headers={"Authorization": f"Bearer {expired}"})
    assert (status, body) == (401, {"error": "invalid token"})
    assert headers["WWW-Authenticate"] == EXPIRED


def test_a_request_without_a_token_gets_a_bare_bearer_challenge_at_the_edge(gw):
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        status, answer_headers, body = gw.request("GET", "/v1/orders", headers=headers)
        assert (status, body) == (401, {"error": "unauthorized"})
        assert answer_headers["WWW-Authenticate"] == NO_TOKEN


def test_an_upstreams_challenge_passes_through_the_gateway_unchanged(gw):
    # The token is good at the edge; users refuses it for its ended session.
    customer = sign_up(gw)
    status, _, _ = gw.request("POST", "/v1/users/logout_all", headers=customer["auth"])
    assert status == 200
    status, headers, body = gw.request("GET", "/v1/users/sessions", headers=customer["auth"])
    assert (status, body) == (401, {"error": "invalid token"})
    assert headers.get_all("WWW-Authenticate") == [SESSION_ENDED]
    # Ops checks its own token: the gateway forwards its realm's challenge.
    status, headers, body = gw.request("GET", "/v1/ops/parked", headers=customer["auth"])
    assert (status, body) == (401, {"error": "unauthorized"})
    assert headers.get_all("WWW-Authenticate") == [
        'Bearer realm="goshop-ops", error="invalid_token", error_description="the operator token is invalid"'
    ]


def test_one_request_id_follows_a_checkout_through_every_process(gw, stack):
    customer = sign_up(gw)
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    _status, headers, order = checkout(gw, customer, 7001, request_id=request_id)
    assert headers["X-Request-ID"] == request_id
    settle(gw, customer, order["id"])
    for name in ("gateway", "orders", "outboxer", "payments-consumer", "orders-consumer"):
        assert request_id in stack.log(name), name


def test_an_untraced_shop_stores_and_sends_no_trace_context(gw, stack, engine):
    # No OTEL_EXPORTER_OTLP_ENDPOINT here: a client's traceparent goes nowhere.
    customer = sign_up(gw)
    request_id = f"untraced-{uuid.uuid4().hex[:12]}"
    headers = {**customer["auth"], "X-Request-ID": request_id, "traceparent": f"00-{'4b' * 16}-{'ab' * 8}-01"}
    status, _, order = gw.request("POST", "/v1/checkout", {"amount_cents": 7001, "currency": "RUB"}, headers=headers)
    assert status == 201, order
    assert settle(gw, customer, order["id"])["status"] == "paid"
    with engine.connect() as connection:
        stored = connection.execute(
            sa.text(
                """
                SELECT o.event_type, o.traceparent, i.traceparent AS applied_in
                FROM (SELECT * FROM orders.outbox UNION ALL SELECT * FROM payments.outbox) o
                LEFT JOIN (SELECT * FROM orders.inbox UNION ALL SELECT * FROM payments.inbox) i USING (event_id)
                WHERE o.key = :order
                """
            ),
            {"order": order["id"]},
        ).all()
    assert sorted(row.event_type for row in stored) == ["order.created", "payment.confirmed"]
    assert {(row.traceparent, row.applied_in) for row in stored} == {(None, None)}
    for name in ("gateway", "orders", "outboxer", "payments-consumer", "orders-consumer"):
        lines = [line for line in stack.log(name).splitlines() if request_id in line]
        assert lines, name
        assert not [line for line in lines if "trace_id" in line or "4b4b4b4b" in line], name


def test_bodies_over_one_megabyte_are_refused_at_the_edge(gw, stack):
    request_id = f"huge-{uuid.uuid4().hex[:6]}"
    raw = b'{"email": "' + b"a" * (1024 * 1024) + b'"}'
    status, _, body = gw.request(
        "POST",
        "/v1/users/register",
        raw=raw,
        headers={"Content-Type": "application/json", "X-Request-ID": request_id},
    )
    assert (status, body) == (413, {"error": "request body too large"})
    assert request_id not in stack.log("users")


def test_a_frozen_upstream_is_a_504_and_a_stopped_one_a_502_then_service_returns(gw, stack):
    customer = sign_up(gw)
    stack.freeze("orders")
    try:
        started = time.monotonic()
        status, _, body = checkout(gw, customer, 301)
        assert (status, body) == (504, {"error": "upstream timeout"})
        assert time.monotonic() - started < 10
    finally:
        stack.thaw("orders")

    assert stack.stop("orders") == 0
    status, _, body = checkout(gw, customer, 302)
    assert (status, body) == (502, {"error": "upstream unavailable"})
    # The public answer says only "not ready"; the internal port says which.
    assert gw.request("GET", "/ready")[::2] == (503, {"error": "not ready"})
    status, _, ready = Http(stack.metrics_ports["gateway"]).request("GET", "/ready")
    assert status == 503
    assert ready["error"] == "not ready: orders"
    assert ready["upstreams"] == {"ops": "ok", "orders": "unavailable", "payments": "ok", "users": "ok"}

    stack.start("orders")
    wait_for(stack.gateway, "/ready", timeout=30)
    status, _, order = checkout(gw, customer, 303)
    assert status == 201, order
    assert settle(gw, customer, order["id"])["status"] == "paid"


def test_the_readme_walkthrough_works_verbatim(stack):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- walkthrough:start -->\s*```sh\n(.*?)```\s*<!-- walkthrough:end -->", readme, re.S)
    assert block, "README has no walkthrough block"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.group(1)],  # noqa: S607 (the user's shell, as the README says)
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GW": f"http://127.0.0.1:{stack.gateway}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"order [0-9a-f-]{36}: paid", lines[-3]), result.stdout
    assert lines[-2] == '{"revoked": 1}'
    assert lines[-1] == "401"


def test_sessions_through_the_gateway_list_end_one_and_end_the_others(gw):
    customer = sign_up(gw)
    status, _, again = gw.request(
        "POST", "/v1/users/login", {"email": customer["email"], "password": "long enough password"}
    )
    assert status == 200
    status, _, body = gw.request("GET", "/v1/users/sessions", headers=customer["auth"])
    assert status == 200, body
    assert sorted(s["current"] for s in body["sessions"]) == [False, True]
    # The address users saw is the one the gateway forwarded: the real peer.
    assert {s["client_address"] for s in body["sessions"]} == {"127.0.0.1"}
    other = next(s["id"] for s in body["sessions"] if not s["current"])
    status, _, _ = gw.request("DELETE", f"/v1/users/sessions/{other}", headers=customer["auth"])
    assert status == 204
    status, _, body = gw.request("POST", "/v1/users/refresh", {"refresh_token": again["refresh_token"]})
    assert (status, body) == (401, {"error": "invalid token"})
    status, _, body = gw.request("POST", "/v1/users/logout_others", headers=customer["auth"])
    assert (status, body) == (200, {"revoked": 0})
