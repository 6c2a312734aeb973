"""Every service's /metrics: requests by route and status, the outbox, the
consumers and the database pool, read back the way Prometheus reads them.

An HTTP service serves them on its internal app only
(``app.registry.goshop_internal_app``, the metrics port); a worker on its
health app."""

import datetime as dt
import json
import uuid

import pytest
import sqlalchemy as sa
import webtest
from prometheus_client.parser import text_string_to_metric_families

from goshop_common.messaging.kafka import make_producer
from goshop_common.messaging.worker import health_app
from goshop_common.observability.metrics import EXPORTED, OUTBOXES
from goshop_devtools.postgres import free_port
from goshop_domain.events import ORDERS_TOPIC, PAYMENTS_TOPIC, event_headers
from goshop_orders.models import OUTBOX as ORDERS_OUTBOX
from goshop_outboxer.__main__ import outbox_tables
from tests.saga_runtime import SagaRuntime, saga_settings, wait_until
from tests.support import with_settings


def internal(app) -> webtest.TestApp:
    """The service's internal app: what its metrics port serves."""
    return webtest.TestApp(app.registry.goshop_internal_app)


def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.content_type == "text/plain"
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name: str, **labels) -> float | None:
    """The sample with exactly these labels (a histogram's ``le`` aside), or None."""
    return samples.get((name, frozenset(labels.items())))


def series(samples, name: str, **labels) -> dict[frozenset, float]:
    """Every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return {key: v for (n, key), v in samples.items() if n == name and wanted <= key}


def moved(before, after, name: str, **labels) -> float:
    return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)


def test_users_requests_are_counted_by_route_and_status_exception_views_included(testapp, users_app):
    metrics = internal(users_app)
    before = scrape(metrics)
    for _ in range(3):
        testapp.post("/v1/users/login", "{not json", content_type="application/json", status=400)
    testapp.post_json("/v1/users/login", {"email": "nobody@example.com", "password": "wrong password"}, status=401)
    testapp.get("/no/such/route", status=404)
    after = scrape(metrics)

    login = {"service": "users", "route": "users_login", "method": "POST"}
    assert moved(before, after, "goshop_http_requests_total", **login, status="400") == 3
    assert moved(before, after, "goshop_http_requests_total", **login, status="401") == 1
    assert moved(before, after, "goshop_http_request_duration_seconds_count", **login) == 4
    assert moved(before, after, "goshop_http_request_duration_seconds_bucket", **login, le="+Inf") == 4
    assert (
        moved(
            before, after, "goshop_http_requests_total", service="users", route="unmatched", method="GET", status="404"
        )
        == 1
    )


def test_users_metrics_report_the_database_pool(testapp, users_app, settings):
    testapp.get("/ready")
    samples = scrape(internal(users_app))
    assert value(samples, "goshop_db_pool_size", service="users") == settings.db_pool_size
    checked_out = value(samples, "goshop_db_pool_connections", service="users", state="checked_out")
    idle = value(samples, "goshop_db_pool_connections", service="users", state="idle")
    assert checked_out == 0  # nothing holds a connection between requests
    assert idle >= 1  # /ready's ping left its connection in the pool


def test_orders_requests_are_counted_by_route_and_status(orders_client, orders_app, customer):
    metrics = internal(orders_app)
    before = scrape(metrics)
    for amount in (1001, 1002):
        orders_client.post_json("/v1/orders", {"amount_cents": amount}, headers=customer["headers"], status=201)
    orders_client.get(f"/v1/orders/{uuid.uuid4()}", headers=customer["headers"], status=404)
    after = scrape(metrics)

    create = {"service": "orders", "route": "orders", "method": "POST"}
    assert moved(before, after, "goshop_http_requests_total", **create, status="201") == 2
    assert moved(before, after, "goshop_http_request_duration_seconds_count", **create) == 2
    assert (
        moved(before, after, "goshop_http_requests_total", service="orders", route="order", method="GET", status="404")
        == 1
    )
    assert value(after, "goshop_db_pool_size", service="orders") is not None
    assert value(after, "goshop_db_pool_connections", service="orders", state="idle") is not None


def test_payments_requests_are_counted_by_route_and_status(payments_app, customer, seam_client):
    client = seam_client(payments_app)
    before = scrape(internal(payments_app))
    client.get(f"/v1/payments?order_id={uuid.uuid4()}", headers=customer["headers"], status=200)
    client.get("/v1/payments?order_id=nope", headers=customer["headers"], status=400)
    client.get("/v1/payments", status=401)
    after = scrape(internal(payments_app))

    listing = {"service": "payments", "route": "payments", "method": "GET"}
    assert moved(before, after, "goshop_http_requests_total", **listing, status="200") == 1
    assert moved(before, after, "goshop_http_requests_total", **listing, status="400") == 1
    assert moved(before, after, "goshop_http_requests_total", **listing, status="401") == 1
    assert moved(before, after, "goshop_http_request_duration_seconds_count", **listing) == 3
    assert value(after, "goshop_db_pool_size", service="payments") is not None


def test_the_gateway_counts_an_unreachable_upstream_as_502_on_its_route(service_settings):
    from goshop_gateway import make_app

    dead = f"http://127.0.0.1:{free_port()}"
    app = make_app(with_settings(service_settings, users_url=dead))
    client = webtest.TestApp(app)
    before = scrape(internal(app))
    client.post_json("/v1/users/login", {"email": "a@example.com", "password": "long enough"}, status=502)
    after = scrape(internal(app))

    login = {"service": "gateway", "route": "users_login", "method": "POST"}
    assert moved(before, after, "goshop_http_requests_total", **login, status="502") == 1
    assert moved(before, after, "goshop_http_request_duration_seconds_count", **login) == 1
    assert not series(after, "goshop_db_pool_size", service="gateway"), "the gateway has no database"


@pytest.fixture
def gateway_app(service_settings):
    from goshop_gateway import make_app

    return make_app(with_settings(service_settings, users_url=f"http://127.0.0.1:{free_port()}"))


@pytest.mark.parametrize("name", ["users_app", "orders_app", "payments_app", "gateway_app"])
def test_a_service_serves_metrics_on_its_internal_app_never_on_its_public_one(request, name):
    app = request.getfixturevalue(name)
    assert webtest.TestApp(app).get("/metrics", status=404).json == {"error": "not found"}
    metrics = internal(app)
    assert metrics.get("/metrics").content_type == "text/plain"
    assert metrics.get("/live").json == {"status": "ok"}
    # The internal app is no second way into the API.
    assert metrics.get("/openapi.json", status=404).json == {"error": "not found"}


def test_scrapes_of_the_internal_app_are_not_counted_as_requests(users_app):
    metrics = internal(users_app)
    before = scrape(metrics)
    metrics.get("/live")
    metrics.get("/no/such/route", status=404)
    after = scrape(metrics)
    counted = {key for (name, key), v in after.items() if name == "goshop_http_requests_total"}
    assert all(dict(labels)["route"] != "metrics" for labels in counted)
    unmatched = {"service": "users", "route": "unmatched", "method": "GET", "status": "404"}
    assert moved(before, after, "goshop_http_requests_total", **unmatched) == 0


def test_a_worker_health_app_serves_metrics_only_when_named(settings, engine):
    webtest.TestApp(health_app(settings, {})).get("/metrics", status=404)
    client = webtest.TestApp(health_app(settings, {}, service="test-worker", engine=engine))
    client.get("/live")
    samples = scrape(client)
    live = {"service": "test-worker", "route": "live", "method": "GET", "status": "200"}
    assert value(samples, "goshop_http_requests_total", **live) >= 1
    assert value(samples, "goshop_db_pool_size", service="test-worker") == engine.pool.size()


def test_the_outbox_backlog_counts_pending_rows_and_the_oldest_ones_age(settings, clean_db):
    with clean_db.begin() as connection:
        connection.execute(
            ORDERS_OUTBOX.insert().values(
                event_id=uuid.uuid4(),
                topic=ORDERS_TOPIC,
                key=str(uuid.uuid4()),
                event_type="order.created",
                payload={},
                created_at=sa.func.now() - dt.timedelta(seconds=90),
                # Not due for an hour: no outboxer running in this process claims it.
                next_attempt_at=sa.func.now() + dt.timedelta(hours=1),
            )
        )
    OUTBOXES.watch(clean_db, ORDERS_OUTBOX)
    try:
        samples = scrape(webtest.TestApp(health_app(settings, {}, service="test-worker")))
    finally:
        OUTBOXES.forget(ORDERS_OUTBOX)
    assert value(samples, "goshop_outbox_backlog", table="orders.outbox") == 1
    assert 90 <= value(samples, "goshop_outbox_oldest_pending_age_seconds", table="orders.outbox") < 600


def test_every_exported_name_is_served(settings, engine):
    client = webtest.TestApp(health_app(settings, {}, service="test-worker", engine=engine))
    text = client.get("/metrics").text
    # The parser names a counter's family without its _total.
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {name.removesuffix("_total") for name in EXPORTED} <= families


# -- the saga's workers --------------------------------------------------------


@pytest.fixture(scope="module")
def saga(service_settings, kafka_broker):
    runtime = SagaRuntime(saga_settings(service_settings, kafka_broker.bootstrap)).start()
    # What python -m goshop_outboxer watches; here the workers are threads.
    tables = outbox_tables(runtime.settings.outbox_schemas)
    for table in tables:
        OUTBOXES.watch(runtime.engine, table)
    yield runtime
    for table in tables:
        OUTBOXES.forget(table)
    runtime.stop()


@pytest.fixture
def worker_metrics(saga):
    client = webtest.TestApp(health_app(saga.settings, {}, service="saga", engine=saga.engine))
    return lambda: scrape(client)


# The workers are threads with connections of their own: these tests' orders
# are committed (marked ``commits``), not rolled back through the seam.
#
# The runtime's consumer groups are new: they also read the events earlier
# tests left on the topics, so the counters below can move by more than this
# test's order. "Moved", not "moved by exactly one".


@pytest.mark.commits
def test_a_settled_order_moves_the_outbox_and_consumer_series(saga, worker_metrics, orders_client, customer):
    before = worker_metrics()
    order = orders_client.post_json("/v1/orders", {"amount_cents": 4321}, headers=customer["headers"]).json
    assert saga.wait_settled([order["id"]]) == {order["id"]: "paid"}

    def counted():
        after = worker_metrics()
        moves = [
            moved(before, after, "goshop_outbox_published_total", table="orders.outbox"),
            moved(before, after, "goshop_outbox_published_total", table="payments.outbox"),
            moved(before, after, "goshop_consumer_events_total", consumer="payments", outcome="consumed"),
            moved(before, after, "goshop_consumer_events_total", consumer="payments", outcome="applied"),
            moved(before, after, "goshop_consumer_events_total", consumer="orders", outcome="applied"),
        ]
        return all(m >= 1 for m in moves)

    wait_until(counted, message="outbox and consumer counters moved")
    after = worker_metrics()
    assert moved(before, after, "goshop_outbox_publish_failures_total", table="orders.outbox") == 0

    def drained():
        samples = worker_metrics()
        return all(
            value(samples, name, table=table) == 0
            for name in ("goshop_outbox_backlog", "goshop_outbox_oldest_pending_age_seconds")
            for table in ("orders.outbox", "payments.outbox")
        )

    wait_until(drained, message="outbox backlog back to 0")


@pytest.mark.commits
def test_consumer_lag_is_reported_per_assigned_partition_and_drains_to_zero(
    saga, worker_metrics, orders_client, customer
):
    order = orders_client.post_json("/v1/orders", {"amount_cents": 4322}, headers=customer["headers"]).json
    saga.wait_settled([order["id"]])

    def caught_up():
        samples = worker_metrics()
        lags = {c: series(samples, "goshop_consumer_lag", consumer=c) for c in ("payments", "orders")}
        return lags if all(lags.values()) and not any(v for lag in lags.values() for v in lag.values()) else None

    lags = wait_until(caught_up, message="consumers caught up")
    assert {dict(labels)["topic"] for labels in lags["payments"]} == {ORDERS_TOPIC}
    assert {dict(labels)["topic"] for labels in lags["orders"]} == {PAYMENTS_TOPIC}
    assert all(dict(labels)["partition"].isdigit() for lag in lags.values() for labels in lag)


@pytest.mark.commits
def test_a_redelivered_event_counts_as_a_duplicate(saga, worker_metrics, orders_client, customer, engine):
    order = orders_client.post_json("/v1/orders", {"amount_cents": 4323}, headers=customer["headers"]).json
    saga.wait_settled([order["id"]])
    with engine.connect() as connection:
        [payload] = connection.execute(
            sa.select(ORDERS_OUTBOX.c.payload).where(ORDERS_OUTBOX.c.key == order["id"])
        ).scalars()
    before = worker_metrics()
    producer = make_producer(saga.settings.kafka_bootstrap)
    try:
        producer.send(
            ORDERS_TOPIC,
            key=order["id"].encode(),
            value=json.dumps(payload).encode(),
            headers=event_headers(payload["event"], payload["event_id"]),
        ).get(timeout=10)
    finally:
        producer.close(timeout=5)

    def duplicate_counted():
        after = worker_metrics()
        return moved(before, after, "goshop_consumer_events_total", consumer="payments", outcome="duplicate") >= 1

    wait_until(duplicate_counted, message="duplicate counted")
