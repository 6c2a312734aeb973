"""What must hold after a load, checked through the gateway as each customer.

Locust's run leaves a report (``goshop_devtools.load.locustfile``): every
status code its customers saw, and each customer with the orders it placed.
The checks:

- **no 5xx**: no answer of the shop's was a server error;
- **every order final**: each order of each customer (as the customer's own
  ``GET /v1/orders`` lists them) is ``paid`` or ``cancelled`` within the
  settle deadline;
- **one order per checkout**: a customer has no order beyond those the load
  placed, save one per checkout whose answer never came (a replayed
  Idempotency-Key that made a second order shows here, and in the replays);
- **one payment each**: ``GET /v1/payments?order_id=`` shows exactly one
  payment, ``confirmed`` for a paid order and ``failed`` for a cancelled one —
  or, for an order the payment timeout cancelled, one that took no money in
  the end (``refunded``, ``voided`` or ``failed``): money and order agree;
- **no other errors**: every request got the answer the scenario expects.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
import urllib.parse

from goshop_orders.read_contract import PAYMENT_TIMEOUT_REASON

FINAL = {"paid": "confirmed", "cancelled": "failed"}
# An order cancelled because its payment did not come in time: its payment, if
# taken late, was given back; if not taken yet, it never will be.
TIMED_OUT = PAYMENT_TIMEOUT_REASON
TIMED_OUT_PAYMENTS = ("refunded", "voided", "failed")
PAGE = 100
# How the server-error invariant's violation begins (a caller that admits
# some 5xx, as the soak does 503s during its faults, finds it by this).
NO_5XX = "no 5xx"


@dataclasses.dataclass
class Outcome:
    """The orders found, by status, and every invariant broken (empty: all held)."""

    orders: dict[str, int] = dataclasses.field(default_factory=dict)
    payments: int = 0
    violations: list[str] = dataclasses.field(default_factory=list)


class Gateway:
    """A keep-alive JSON client to the gateway, as a customer calls it."""

    def __init__(self, url: str, timeout: float = 10.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.hostname is None:
            raise ValueError(f"{url!r} names no host")
        connection_class = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        self.connection = connection_class(parsed.hostname, parsed.port, timeout=timeout)

    def call(self, method: str, path: str, body=None, token: str | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = json.dumps(body).encode() if body is not None else None
        try:
            self.connection.request(method, path, body=payload, headers=headers)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            # No answer: status 0, a violation wherever it is asked for. The
            # next call connects anew (http.client reopens a closed connection).
            self.connection.close()
            return 0, {}
        parsed = json.loads(data) if data else {}
        return response.status, parsed if isinstance(parsed, dict) else {}

    def close(self) -> None:
        self.connection.close()


def status_violations(statuses: dict[str, int], errors: list[dict], idempotency: list[str]) -> list[str]:
    """The invariants Locust's run alone decides: no 5xx, replays replayed,
    no other failed request."""
    found = []
    server_errors = {code: n for code, n in statuses.items() if code.isdigit() and 500 <= int(code) <= 599}
    if server_errors:
        listed = ", ".join(f"{n} x {code}" for code, n in sorted(server_errors.items()))
        found.append(f"{NO_5XX}: the shop answered {listed}")
    for violation in idempotency:
        found.append(f"idempotency: a replayed checkout gave another order ({violation})")
    for error in errors:
        if error["error"].startswith("HTTP 5"):
            continue  # counted above
        found.append(f"no other errors: {error['name']}: {error['error']} ({error['occurrences']} x)")
    return found


def _orders_of(gateway: Gateway, token: str) -> tuple[int, list[dict]]:
    """Every order of the customer, newest first, through every page."""
    orders: list[dict] = []
    cursor: str | None = None
    while True:
        query = {"limit": PAGE, **({"cursor": cursor} if cursor else {})}
        status, body = gateway.call("GET", f"/v1/orders?{urllib.parse.urlencode(query)}", token=token)
        if status != 200:
            return status, orders
        orders.extend(body.get("orders", []))
        cursor = body.get("next_cursor")
        if not cursor:
            return 200, orders


def _log_in(gateway: Gateway, customers: list[dict], outcome: Outcome) -> dict[str, str]:
    """An access token for each customer, by email (as the customer logs in)."""
    tokens = {}
    for customer in customers:
        account = {"email": customer["email"], "password": customer["password"]}
        status, body = gateway.call("POST", "/v1/users/login", account)
        if status != 200:
            outcome.violations.append(f"check: could not log in as {customer['email']} (HTTP {status})")
            continue
        tokens[customer["email"]] = body["access_token"]
    return tokens


def _settled(gateway: Gateway, tokens: dict[str, str], settle_seconds: float, outcome: Outcome, clock):
    """Each customer's orders, listed again until every one is final or the
    deadline passes."""
    deadline = clock() + settle_seconds
    listed: dict[str, list[dict]] = {}
    pending = list(tokens)
    while True:
        still = []
        for email in pending:
            status, orders = _orders_of(gateway, tokens[email])
            if status != 200:
                outcome.violations.append(f"check: GET /v1/orders as {email} answered {status}")
                continue
            listed[email] = orders
            if any(o["status"] not in FINAL for o in orders):
                still.append(email)
        pending = still
        if not pending or clock() > deadline:
            return listed
        time.sleep(0.5)


def _check_payments(gateway: Gateway, token: str, order: dict, outcome: Outcome) -> None:
    status, body = gateway.call("GET", f"/v1/payments?order_id={order['id']}", token=token)
    if status != 200:
        outcome.violations.append(f"check: GET /v1/payments for {order['id']} answered {status}")
        return
    seen = [p.get("status") for p in body.get("payments", [])]
    outcome.payments += len(seen)
    expected: tuple[str, ...]
    if order["status"] == "cancelled" and order.get("reason") == TIMED_OUT:
        expected = TIMED_OUT_PAYMENTS
    else:
        expected = (FINAL[order["status"]],)
    if len(seen) != 1 or seen[0] not in expected:
        wanted = " or ".join(repr(status) for status in expected)
        outcome.violations.append(
            f"one payment each: order {order['id']} ({order['status']}) has payments {seen}, not one {wanted}"
        )


def check_orders(gateway: Gateway, customers: list[dict], settle_seconds: float, clock=time.monotonic) -> Outcome:
    """Every order of every customer final within ``settle_seconds``, no
    more orders than checkouts, and one matching payment each."""
    outcome = Outcome()
    tokens = _log_in(gateway, customers, outcome)
    listed = _settled(gateway, tokens, settle_seconds, outcome, clock)
    for customer in customers:
        email = customer["email"]
        if email not in listed:
            continue
        placed, ids = set(customer["orders"]), {o["id"] for o in listed[email]}
        if placed - ids:
            outcome.violations.append(f"orders: {email} does not see its orders {sorted(placed - ids)}")
        unanswered = customer.get("unconfirmed", 0)
        if len(ids - placed) > unanswered:
            outcome.violations.append(
                f"one order per checkout: {email} has {len(ids - placed)} order(s) the load did not place "
                f"and only {unanswered} checkout(s) went unanswered"
            )
        for order in listed[email]:
            outcome.orders[order["status"]] = outcome.orders.get(order["status"], 0) + 1
            if order["status"] in FINAL:
                _check_payments(gateway, tokens[email], order, outcome)
            else:
                outcome.violations.append(
                    f"every order final: order {order['id']} is still {order['status']!r} "
                    f"{settle_seconds:g} s after the load"
                )
    return outcome
