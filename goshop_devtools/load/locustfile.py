"""The customers ``make load`` simulates, as Locust runs them (``goshop_devtools.load``).

Each simulated customer registers once, logs in, and walks every step once:
reads ``me``, checks out, sends that checkout again with the same
Idempotency-Key (which must replay the same order), polls the order's status
until it is final, refreshes its tokens, logs out and back in. Then, with a
think time between steps, it mostly checks out (a fresh key; one time in five
replayed) and polls, and sometimes reads ``me``, refreshes, or logs out and in.

Locust monkey-patches the process with gevent when it is imported, so this
file runs only under ``locust`` in a process of its own, and imports nothing
of goshop's. It tells the driver what happened through one JSON file
(``GOSHOP_LOAD_REPORT``), written as Locust quits: Locust's statistics per
request type, every status code seen, and each customer with the orders it
placed, which the driver then checks through the gateway.

Only right passwords are sent, and at most one login per customer is in
flight: the login throttle counts failures (goshop_users.throttle), and a
login in flight holds one of its client's 50 until it succeeds, so up to 50
customers from one address never meet a 429 (``MAX_USERS`` in the driver).
"""

from __future__ import annotations

import collections
import json
import os
import random
import secrets
import time
import uuid

from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

REPORT_PATH = os.environ.get("GOSHOP_LOAD_REPORT", "")
RUN_ID = os.environ.get("GOSHOP_LOAD_RUN_ID") or uuid.uuid4().hex[:8]
# A share of checkouts sent twice with the same key: the second must replay.
REPLAY_SHARE = 0.2
POLL_INTERVAL = 0.2
# A customer stops polling after this long; the driver's own check, with its
# own deadline, decides whether the order ever became final.
POLL_SECONDS = 15.0
FINAL = ("paid", "cancelled")

STATUSES: collections.Counter[int] = collections.Counter()
CUSTOMERS: list[dict] = []
# Replays answered with another order, or not as a replay: idempotency broken.
IDEMPOTENCY_VIOLATIONS: list[str] = []


def _json(response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class Customer(FastHttpUser):
    wait_time = between(0.2, 1.0)
    # The gateway answers 504 after its own 10 s read timeout: waiting longer
    # than that would only hide a stall.
    network_timeout = 20.0
    connection_timeout = 5.0

    def call(self, method: str, path: str, name: str, expected: int, **kwargs):
        """One request, named after its route; any status but ``expected``
        is a failure in Locust's statistics. Returns the response, or None."""
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as response:
            STATUSES[response.status_code] += 1
            if response.status_code == expected:
                response.success()
                return response
            if response.status_code == 429:
                response.failure("HTTP 429: throttled")
            elif response.status_code == 0:
                response.failure(f"no answer: {type(response.error).__name__}")
            else:
                response.failure(f"HTTP {response.status_code}: {_json(response).get('error', '')}")
            return None

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.access}"}

    def on_start(self):
        self.record = {
            "email": f"load-{RUN_ID}-{uuid.uuid4().hex[:12]}@example.com",
            "password": secrets.token_urlsafe(18),
            "orders": [],
            # Checkouts whose answer never came: an order may exist for them.
            "unconfirmed": 0,
        }
        account = {"email": self.record["email"], "password": self.record["password"]}
        if self.call("POST", "/v1/users/register", "POST /v1/users/register", 201, json=account) is None:
            raise StopUser
        CUSTOMERS.append(self.record)
        if not self.login():
            raise StopUser
        # A first visit walks every step once, so that each request type is
        # in every run's figures however short; the tasks below then mix them.
        self.me()
        self.checkout(replay=True)
        self.refresh()
        self.logout_and_login_again()

    def login(self) -> bool:
        account = {"email": self.record["email"], "password": self.record["password"]}
        response = self.call("POST", "/v1/users/login", "POST /v1/users/login", 200, json=account)
        if response is None:
            return False
        self.take(_json(response))
        return True

    def take(self, tokens: dict) -> None:
        self.access, self.refresh_token = tokens.get("access_token"), tokens.get("refresh_token")

    @task(3)
    def me(self):
        self.call("GET", "/v1/users/me", "GET /v1/users/me", 200, headers=self.auth)

    @task(8)
    def checkout(self, replay: bool = False):
        # Some amounts are multiples of 5: the mock provider declines those,
        # so both outcomes of the saga are in the mix.
        body = {"amount_cents": random.randint(100, 50000), "currency": "RUB"}
        headers = {**self.auth, "Idempotency-Key": f"load-{uuid.uuid4().hex}"}
        # Unconfirmed until its answer comes: an error, or Locust's stop
        # cutting the request off, may leave an order the customer never saw.
        self.record["unconfirmed"] += 1
        response = self.call("POST", "/v1/checkout", "POST /v1/checkout", 201, json=body, headers=headers)
        if response is None:
            return
        self.record["unconfirmed"] -= 1
        order_id = _json(response).get("id")
        self.record["orders"].append(order_id)
        if not isinstance(order_id, str):
            return  # no id to replay or follow; the invariants find the order missing
        if replay or random.random() < REPLAY_SHARE:
            self.replay(body, headers, order_id)
        self.poll(order_id)

    def replay(self, body: dict, headers: dict, order_id: str) -> None:
        replayed = self.call("POST", "/v1/checkout", "POST /v1/checkout (replay)", 201, json=body, headers=headers)
        if replayed is None:
            return
        again = _json(replayed).get("id")
        if again != order_id or replayed.headers.get("Idempotent-Replayed") != "true":
            IDEMPOTENCY_VIOLATIONS.append(f"key {headers['Idempotency-Key']}: order {order_id}, then {again}")

    def poll(self, order_id: str) -> None:
        deadline = time.monotonic() + POLL_SECONDS
        while time.monotonic() < deadline:
            response = self.call(
                "GET", f"/v1/orders/{order_id}/status", "GET /v1/orders/{id}/status", 200, headers=self.auth
            )
            if response is None or _json(response).get("status") in FINAL:
                return
            time.sleep(POLL_INTERVAL)

    @task(2)
    def refresh(self):
        body = {"refresh_token": self.refresh_token}
        response = self.call("POST", "/v1/users/refresh", "POST /v1/users/refresh", 200, json=body)
        if response is not None:
            self.take(_json(response))

    @task(1)
    def logout_and_login_again(self):
        body = {"refresh_token": self.refresh_token}
        self.call("POST", "/v1/users/logout", "POST /v1/users/logout", 204, json=body)
        if not self.login():
            raise StopUser


def _entry(entry) -> dict:
    return {
        "name": entry.name,
        "method": entry.method,
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "rps": entry.total_rps,
        "p50_ms": entry.get_response_time_percentile(0.5) if entry.num_requests else None,
        "p99_ms": entry.get_response_time_percentile(0.99) if entry.num_requests else None,
    }


@events.quitting.add_listener
def write_report(environment, **_kwargs):
    if not REPORT_PATH:
        return
    stats = environment.stats
    report = {
        "entries": [_entry(e) for e in sorted(stats.entries.values(), key=lambda e: (e.name, e.method))],
        "total": _entry(stats.total),
        "errors": [
            {"method": e.method, "name": e.name, "error": str(e.error), "occurrences": e.occurrences}
            for e in stats.errors.values()
        ],
        "statuses": {str(code): count for code, count in sorted(STATUSES.items())},
        "customers": CUSTOMERS,
        "idempotency_violations": IDEMPOTENCY_VIOLATIONS,
    }
    with open(REPORT_PATH, "w") as out:
        json.dump(report, out)
