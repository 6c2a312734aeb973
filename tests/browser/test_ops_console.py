"""The ops console in a real browser, against the shop as ``make run`` starts
it: an operator signs in once, finds a checkout placed through the gateway and
watches its drawing reach ``paid``; a declined order shows
``insufficient_funds`` and why; a poison event is listed, replayed once and
refused the second time; signing out closes the pages; a wrong token, a
customer's token and a form without its CSRF token are refused with a
message; and it all works from the keyboard at a phone's width."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from goshop_common.messaging.kafka import make_producer
from goshop_common.settings import DEV_OPS_TOKEN
from goshop_domain.events import ORDERS_TOPIC
from goshop_ops.console.drawing import LANES
from goshop_ops.console.sessions import CUSTOMER_TOKEN, WRONG_TOKEN
from tests.integration.goshop_ops.conftest import park_record

pytestmark = pytest.mark.slow

PAID_CENTS = 19901  # not a multiple of the dev fail divisor (5): confirmed
DECLINED_CENTS = 500  # a multiple: insufficient_funds
ZONE = "America/New_York"


def expect(target):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def _opened(context):
    """A page of ``context`` that fails its test if the page's own
    Content-Security-Policy blocked anything on it (an inline script or style
    the console should not have)."""
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    opened.blocked = []
    opened.on("console", lambda m: opened.blocked.append(m.text) if "Content Security Policy" in m.text else None)
    return opened


@pytest.fixture
def page(browser, shop):
    context = browser.new_context(base_url=shop.url, timezone_id=ZONE, viewport={"width": 1366, "height": 900})
    opened = _opened(context)
    yield opened
    context.close()
    assert opened.blocked == [], "the console's own policy blocked part of it"


PHONE_WIDTH = 390


@pytest.fixture
def phone(browser, shop):
    context = browser.new_context(
        base_url=shop.url,
        timezone_id=ZONE,
        viewport={"width": PHONE_WIDTH, "height": 844},
        is_mobile=True,
        has_touch=True,
    )
    opened = _opened(context)
    yield opened
    context.close()
    assert opened.blocked == [], "the console's own policy blocked part of it"


def sign_in(page, token: str = DEV_OPS_TOKEN) -> None:
    page.goto("/ops/")
    expect(page).to_have_url(re.compile(r"/ops/signin$"))
    page.get_by_label("Operator token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def reload_until(page, locator: str, text: str, timeout: float = 45) -> None:
    """The order page is drawn once per request: reload until the saga is there."""
    deadline = time.monotonic() + timeout
    while page.locator(locator).inner_text() != text:
        assert time.monotonic() < deadline, f"{locator} is {page.locator(locator).inner_text()!r}, not {text!r}"
        time.sleep(0.5)
        page.reload()


def test_a_checkout_through_the_gateway_is_found_by_email_and_drawn_until_paid(page, shop, artifacts):
    customer = shop.customer()
    order_id = shop.checkout(customer, PAID_CENTS)
    sign_in(page)
    expect(page).to_have_url(re.compile(r"/ops/$"))
    # The health strip: every process of make run ready.
    expect(page.locator(".strip .chip.ok")).to_have_count(9)
    expect(page.locator(".strip .chip.bad")).to_have_count(0)
    # Backlog and lag from the outboxer's and the consumers' /metrics, parked from the broker.
    expect(page.locator(".figures")).not_to_contain_text("unknown")

    page.get_by_label("Order id or customer email").fill(f" {customer['email'].upper()} ")
    page.keyboard.press("Enter")
    page.get_by_role("link", name=order_id).click()
    expect(page).to_have_url(re.compile(f"/ops/orders/{order_id}$"))
    reload_until(page, "#final-status", "paid")

    assert page.locator("svg.drawing .lane-name").all_text_contents() == list(LANES)
    steps = page.locator("table.steps tbody tr")
    assert steps.count() >= 10
    expect(steps.last).to_contain_text("new → paid")
    # Each event's id beside the steps about it: order.created and payment.confirmed.
    event_ids = set(page.locator("table.steps tbody code").all_inner_texts())
    assert len(event_ids) == 2
    assert all(uuid.UUID(event_id) for event_id in event_ids)
    expect(page.locator("#explanation")).to_contain_text(f"Order {order_id}")
    expect(page.locator(".source")).to_have_text("Explained by rules.")

    # Times in the operator's zone, UTC on hover.
    first = page.locator("table.steps time").first
    utc = first.get_attribute("datetime")
    assert utc.endswith("Z")
    assert first.inner_text() != utc
    assert re.search(r"\b(EST|EDT|GMT-[45])\b", first.inner_text()), first.inner_text()
    assert first.get_attribute("title") == f"{utc} (UTC); shown in {ZONE}"

    shot = artifacts / "ops-console-timeline.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nops console timeline screenshot: {shot}")


def test_a_declined_order_pasted_in_upper_case_shows_insufficient_funds_and_why(page, shop):
    order_id = shop.checkout(shop.customer(), DECLINED_CENTS)
    sign_in(page)
    page.get_by_label("Order id or customer email").fill(f"   {order_id.upper()}  ")
    page.get_by_role("button", name="Find").click()
    expect(page).to_have_url(re.compile(f"/ops/orders/{order_id}$"))
    reload_until(page, "#final-status", "cancelled")
    expect(page.locator("#final-reason")).to_have_text("insufficient_funds")
    expect(page.locator("table.steps")).to_contain_text("payment failed (insufficient_funds)")
    expect(page.locator("#explanation")).to_contain_text("the payment failed (insufficient_funds)")


def test_a_bad_id_says_so(page):
    sign_in(page)
    page.get_by_label("Order id or customer email").fill("order 42")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("“order 42” is neither an order id nor an email.")
    missing = uuid.uuid4()
    page.goto(f"/ops/orders/{missing}")
    expect(page.get_by_role("alert")).to_have_text(f"No order has the id {missing}.")


def _parked_row(page, consumer: str, timeout: float = 30):
    """The parked page's row of ``consumer``'s event, reloading until it is listed."""
    deadline = time.monotonic() + timeout
    page.goto("/ops/parked")
    row = page.locator("tr", has=page.get_by_role("cell", name=consumer, exact=True))
    while row.count() == 0:
        assert time.monotonic() < deadline, f"nothing parked by {consumer} is listed"
        time.sleep(0.5)
        page.reload()
    return row


def test_a_poison_event_is_listed_and_replayed_once_a_second_replay_refused(page, shop):
    # A record that is not JSON: the shop's own payments consumer parks it.
    producer = make_producer(shop.bootstrap)
    try:
        producer.send(ORDERS_TOPIC, key=f"poison-{uuid.uuid4().hex[:8]}".encode(), value=b"not json").get(10)
    finally:
        producer.close(timeout=5)
    # One parked by a consumer of the test's own, which no process runs: its
    # replay is never applied or parked again, so it stays replayed.
    mine = f"browser-{uuid.uuid4().hex[:8]}"
    park_record(shop.bootstrap, mine, b"not json either")

    sign_in(page)
    # Both records are on orders.events, so the payments consumer parks both.
    real = _parked_row(page, "payments").first
    expect(real).to_contain_text("malformed")
    expect(real).to_contain_text("not JSON")

    row = _parked_row(page, mine)
    expect(row).to_contain_text("handler_error")
    expect(row).to_contain_text("RuntimeError: boom")
    row.get_by_role("link", name="Replay…").click()
    expect(page.get_by_role("heading", name="Replay a parked event?")).to_be_visible()
    confirmation = page.url
    page.get_by_role("button", name="Replay this event").click()
    expect(page.locator("#outcome")).to_contain_text(f"is back on {ORDERS_TOPIC} partition 0")

    page.goto(confirmation)
    page.get_by_role("button", name="Replay this event").click()
    expect(page.locator("#outcome")).to_contain_text("already replayed: its last replay has not failed")

    row = _parked_row(page, mine)
    expect(row).to_contain_text("yes,")
    expect(row.get_by_role("link", name="Replay…")).to_have_count(0)


def test_wrong_and_customer_tokens_and_a_missing_csrf_token_are_refused_and_sign_out_closes_the_pages(page, shop):
    sign_in(page, "not-the-operator-token")
    expect(page.get_by_role("alert")).to_have_text(WRONG_TOKEN)
    sign_in(page, shop.customer()["access_token"])
    expect(page.get_by_role("alert")).to_have_text(CUSTOMER_TOKEN)

    sign_in(page)
    expect(page.get_by_role("heading", name="Find an order")).to_be_visible()
    # A post with the session's cookie but without its form's token.
    forged = page.request.post(f"{shop.url}/ops/signout", form={"csrf_token": ""}, max_redirects=0)
    assert forged.status == 403
    assert "CSRF token is missing or wrong" in forged.text()
    page.goto("/ops/parked")
    expect(page.get_by_role("heading", name="Parked events")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("Signed out.")
    for path in ("/ops/", "/ops/parked", f"/ops/orders/{uuid.uuid4()}"):
        page.goto(path)
        expect(page).to_have_url(re.compile(r"/ops/signin$"))


def test_at_a_phones_width_the_console_is_used_from_the_keyboard(phone, shop, artifacts):
    order_id = shop.checkout(shop.customer(), PAID_CENTS)
    phone.goto("/ops/signin")
    # The token field has the focus: type, Enter.
    phone.keyboard.type(DEV_OPS_TOKEN)
    phone.keyboard.press("Enter")
    expect(phone).to_have_url(re.compile(r"/ops/$"))
    for _ in range(12):
        if phone.evaluate("document.activeElement.id") == "q":
            break
        phone.keyboard.press("Tab")
    assert phone.evaluate("document.activeElement.id") == "q", "the search field is not reachable with Tab"
    phone.keyboard.type(order_id)
    phone.keyboard.press("Enter")
    reload_until(phone, "#final-status", "paid")
    # Nothing wider than the phone (a mobile browser would widen its layout
    # to fit the page): the drawing and the table scroll in their own boxes.
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE_WIDTH
    expect(phone.locator("#explanation")).to_be_visible()
    phone.screenshot(path=str(artifacts / "ops-console-phone.png"), full_page=True)
