"""The ops console's pages over WebTest, on the real database: operators only,
signed in once with the ops token into an HttpOnly, SameSite=Strict cookie;
every form post carries the session's CSRF token; every page is sent with a
policy that forbids inline script and framing; production serves the
console only at the origin it was given; what an operator types is read as
meant, and a bad id says so."""

from __future__ import annotations

import re
import uuid

import pytest

from goshop_common.db import roles
from goshop_ops.console import sessions
from goshop_ops.console.views import BAD_CSRF, CONSOLE_OFF, SIGNED_OUT, WRONG_ORIGIN
from tests.integration.goshop_ops.conftest import OPERATOR, OPS_TOKEN, create_order, make_ops_app
from tests.support import role_url

ORIGIN = "https://ops.example.com"


def sign_in(client, token: str = OPS_TOKEN, status: int = 303, headers=None):
    return client.post("/ops/signin", {"token": token}, headers=headers or {}, status=status)


def csrf_of(page) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def cookie_header(response) -> str:
    [cookie] = [v for n, v in response.headerlist if n == "Set-Cookie" and v.startswith(sessions.COOKIE_NAME)]
    return cookie


@pytest.fixture
def operator(ops_client):
    """The ops client, signed in."""
    sign_in(ops_client)
    return ops_client


def test_every_page_forbids_inline_script_framing_and_referrers(ops_client):
    for response in (ops_client.get("/ops/signin"), ops_client.get("/ops/", status=303), sign_in(ops_client, "x", 401)):
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy
        assert "'unsafe-inline'" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
    page = ops_client.get("/ops/signin")
    assert "<script>" not in page.text
    assert "style=" not in page.text
    assert '<script src="/ops/static/console.js" defer></script>' in page.text
    assert ops_client.get("/ops/static/console.js").content_type == "text/javascript"


def test_without_a_session_every_page_sends_the_browser_to_sign_in(ops_client):
    order_id = uuid.uuid4()
    for path in ("/ops/", "/ops/orders?q=x", f"/ops/orders/{order_id}", "/ops/parked", "/ops/parked/a/0/0/replay"):
        assert ops_client.get(path, status=303).headers["Location"].endswith("/ops/signin"), path


def test_the_operators_bearer_header_is_no_console_session(ops_client, customer):
    # The console is the browser's way in: a header opens nothing, a customer's least of all.
    assert ops_client.get("/ops/", headers=OPERATOR, status=303)
    assert ops_client.get("/ops/", headers=customer["headers"], status=303)


def test_signing_in_sets_an_httponly_strict_cookie_with_an_expiry_and_never_the_token(ops_client):
    response = sign_in(ops_client)
    assert response.headers["Location"].endswith("/ops/")
    cookie = cookie_header(response)
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "max-age", "path"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "path=/ops/" in cookie.lower()
    assert "secure" not in attributes  # development: plain http
    assert OPS_TOKEN not in cookie
    home = ops_client.get("/ops/")
    assert "Find an order" in home.text
    assert "Sign out" in home.text
    assert OPS_TOKEN not in home.text


def test_a_wrong_token_is_refused_with_a_message(ops_client):
    page = sign_in(ops_client, "not-the-token", status=401)
    assert sessions.WRONG_TOKEN in page.text
    assert not [v for n, v in page.headerlist if n == "Set-Cookie"]
    ops_client.get("/ops/", status=303)


def test_a_customers_access_token_is_refused_as_a_customers(ops_client, customer):
    access = customer["headers"]["Authorization"].removeprefix("Bearer ")
    page = sign_in(ops_client, access, status=401)
    assert "a customer&#39;s access token" in page.text
    ops_client.get("/ops/", status=303)


def test_signing_out_needs_the_csrf_token_and_then_closes_the_pages(operator):
    home = operator.get("/ops/")
    refused = operator.post("/ops/signout", {}, status=403)
    assert BAD_CSRF.replace("'", "&#39;") in refused.text
    operator.post("/ops/signout", {"csrf_token": "forged"}, status=403)
    operator.get("/ops/")  # still signed in
    signed_out = operator.post("/ops/signout", {"csrf_token": csrf_of(home)})
    assert "Signed out." in signed_out.text
    operator.get("/ops/", status=303)


def test_a_copy_of_the_cookie_taken_before_signing_out_opens_nothing(operator):
    taken = operator.cookies[sessions.COOKIE_NAME]
    operator.post("/ops/signout", {"csrf_token": csrf_of(operator.get("/ops/"))})
    operator.set_cookie(sessions.COOKIE_NAME, taken)
    operator.get("/ops/", status=303)
    assert SIGNED_OUT in operator.post("/ops/parked/orders.events.dlq/0/0/replay", {}, status=401).text


def test_a_replay_without_the_csrf_token_is_refused_before_the_broker_is_asked(operator):
    page = operator.post("/ops/parked/orders.events.dlq/0/0/replay", {}, status=403)
    assert "CSRF token is missing or wrong" in page.text


def test_signing_in_again_gives_a_new_csrf_token(operator):
    first = csrf_of(operator.get("/ops/"))
    sign_in(operator)
    assert csrf_of(operator.get("/ops/")) != first


def test_a_session_past_its_expiry_is_over(service_settings, kafka_broker, web_client):
    app = make_ops_app(
        service_settings, ollama_url="", kafka_bootstrap=kafka_broker.bootstrap, console_session_seconds=1
    )
    try:
        client = web_client(app)
        sign_in(client)
        client.get("/ops/")
        import time

        time.sleep(1.1)
        client.get("/ops/", status=303)
    finally:
        app.registry.dbengine.dispose()


# --- production ----------------------------------------------------------------


@pytest.fixture
def production_app(service_settings, kafka_broker):
    def make(origin: str):
        # As the ops role: production refuses to run as a superuser.
        return make_ops_app(
            service_settings,
            database_url=role_url(service_settings.database_url, roles.OPS),
            ollama_url="",
            kafka_bootstrap=kafka_broker.bootstrap,
            env="production",
            console_origin=origin,
        )

    made = []
    yield lambda origin: made.append(make(origin)) or made[-1]
    for app in made:
        app.registry.dbengine.dispose()


def test_production_serves_no_console_without_its_origin(production_app, web_client):
    client = web_client(production_app(""))
    for path in ("/ops/", "/ops/signin"):
        assert CONSOLE_OFF in client.get(path, status=404).text
    assert CONSOLE_OFF in sign_in(client, status=404).text


def test_production_takes_forms_only_from_the_console_origin_and_sets_a_secure_cookie(production_app, web_client):
    client = web_client(production_app(ORIGIN))
    refused = sign_in(client, status=403, headers={"Origin": "https://evil.example"})
    assert WRONG_ORIGIN.replace("'", "&#39;") in refused.text
    sign_in(client, status=403)  # no Origin at all
    response = sign_in(client, headers={"Origin": ORIGIN})
    assert "; secure" in cookie_header(response).lower()
    # WebTest keeps a Secure cookie only for https.
    client.extra_environ["wsgi.url_scheme"] = "https"
    token = csrf_of(client.get("/ops/"))
    elsewhere = client.post(
        "/ops/signout", {"csrf_token": token}, headers={"Origin": "https://evil.example"}, status=403
    )
    assert WRONG_ORIGIN.replace("'", "&#39;") in elsewhere.text
    client.post("/ops/signout", {"csrf_token": token}, headers={"Origin": ORIGIN}, status=200)


# --- finding orders --------------------------------------------------------------


def test_an_order_id_pasted_with_spaces_in_upper_case_is_found(operator, orders_client, customer):
    order = create_order(orders_client, customer, 4200)
    found = operator.get("/ops/orders", {"q": f"  {order['id'].upper()} "}, status=303)
    assert found.headers["Location"].endswith(f"/ops/orders/{order['id']}")
    page = operator.get(f"/ops/orders/{order['id'].upper()}", status=303).follow()
    assert order["id"] in page.text


def test_a_bad_id_says_so(operator):
    assert "is neither an order id nor an email" in operator.get("/ops/orders", {"q": "order 42"}, status=400).text
    assert "Enter an order id" in operator.get("/ops/orders", {"q": "  "}, status=400).text
    assert "“nonsense” is not an order id." in operator.get("/ops/orders/nonsense", status=404).text
    missing = uuid.uuid4()
    assert f"No order has the id {missing}." in operator.get(f"/ops/orders/{missing}", status=404).text


def test_a_customers_latest_orders_are_found_by_their_email(operator, orders_client, customer):
    first = create_order(orders_client, customer, 1100)
    second = create_order(orders_client, customer, 2200)
    page = operator.get("/ops/orders", {"q": f" {customer['email'].upper()} "})
    assert page.text.index(second["id"]) < page.text.index(first["id"]), "newest first"
    assert (
        "No account has the email nobody@example.com." in operator.get("/ops/orders", {"q": "nobody@example.com"}).text
    )


def test_the_order_page_draws_the_saga_and_explains_it(operator, orders_client, customer):
    order = create_order(orders_client, customer, 3300)
    page = operator.get(f"/ops/orders/{order['id']}")
    for lane in ("gateway", "orders", "outboxer", "broker", "payments", "orders consumer"):
        assert f'class="lane-name">{lane}</text>' in page.text
    assert '<span class="status status-new" id="final-status">new</span>' in page.text
    assert "order created" in page.text
    assert "order.created not published" in page.text
    assert "Explained by rules." in page.text
    assert re.search(r'<time datetime="[^"]+Z" title="[^"]+Z \(UTC\)">', page.text)


def test_the_home_page_shows_the_health_strip(operator):
    page = operator.get("/ops/")
    assert "Outbox backlog" in page.text
    assert "Consumer lag" in page.text
    assert "Parked, not replayed" in page.text
    assert "Settled in the last 15 min" in page.text
    assert "no processes configured (GOSHOP_OPS_READY_URLS)" in page.text


def test_a_replay_of_nothing_parked_there_says_so(operator):
    page = operator.get("/ops/parked/orders.events.dlq/0/999999999/replay", status=404)
    assert "Nothing is parked at orders.events.dlq 0/999999999." in page.text
    assert "Nothing is parked at" in operator.get("/ops/parked/orders.events/0/0/replay", status=404).text


# --- parked events in the browser's pages --------------------------------------------


def test_a_signed_in_operator_asking_for_the_sign_in_page_is_sent_home(operator):
    assert operator.get("/ops/signin", status=303).headers["Location"].endswith("/ops/")


def test_a_parked_event_is_confirmed_replayed_once_and_a_second_replay_says_why_not(operator, kafka_broker):
    from tests.integration.goshop_ops.test_parked_events import DLQ, park_one

    consumer = f"console-replay-{uuid.uuid4().hex[:8]}"
    body = park_one(kafka_broker.bootstrap, consumer)
    listing = operator.get("/ops/parked")
    row = re.search(rf'<tr data-event-id="{body["event_id"]}">(.*?)</tr>', listing.text, re.DOTALL).group(1)
    assert consumer in row
    path = re.search(r'href="([^"]+/replay)"', row).group(1)
    assert path.startswith(f"/ops/parked/{DLQ}/")
    confirmation = operator.get(path)
    assert body["event_id"] in confirmation.text
    token = csrf_of(confirmation)
    done = operator.post(path, {"csrf_token": token})
    assert "Replayed:" in done.text
    assert body["event_id"] in done.text
    again = operator.post(path, {"csrf_token": token}, status=409)
    assert "Not replayed" in again.text


def test_a_broker_that_does_not_answer_is_a_page_that_says_so(service_settings, web_client):
    from tests.integration.goshop_ops.test_parked_events import _closed_port

    app = make_ops_app(service_settings, ollama_url="", kafka_bootstrap=f"127.0.0.1:{_closed_port()}")
    try:
        client = web_client(app)
        sign_in(client)
        for path in ("/ops/parked", "/ops/parked/orders.events.dlq/0/0/replay"):
            page = client.get(path, status=503)
            assert "The parked events could not be read" in page.text
        assert (
            "Not replayed"
            in client.post(
                "/ops/parked/orders.events.dlq/0/0/replay", {"csrf_token": csrf_of(client.get("/ops/"))}, status=503
            ).text
        )
    finally:
        app.registry.dbengine.dispose()
