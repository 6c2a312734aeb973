"""Prometheus metrics: what every goshop process exports at ``/metrics``.

``/metrics`` is an internal endpoint: it is served on a process's internal
port (``goshop_common.web.app.make_internal_app``, a worker's health port), never
on the port the internet reaches.

The names and labels below are a contract: alert rules and dashboards
(``monitoring/``) are written against exactly these, so renaming one is a
breaking change. ``EXPORTED`` lists them all.

One registry per process. The metric objects are module-level, so building
several apps in one process (the tests do) registers nothing twice; the
``service`` label tells the apps apart. Values that are only true at scrape
time — outbox backlog, pool usage — are read then, not kept up to date.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.tweens import INGRESS

log = logging.getLogger("goshop.metrics")

REGISTRY = CollectorRegistry()

# The route label of a request that matched no route: a scanner's random
# paths all count under this one value.
UNMATCHED = "unmatched"
# A client can send any method name; only these become label values, so a
# scanner cannot make a new series per request.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The ``outcome`` label's values. goshop_common.messaging.consumer makes each
# series up front, so every one reads 0 before its first event.
CONSUMER_OUTCOMES = ("consumed", "applied", "duplicate", "parked", "retried")

HTTP_REQUESTS = Counter(
    "goshop_http_requests_total",
    "HTTP requests answered, by route and status.",
    ["service", "route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "goshop_http_request_duration_seconds",
    "Time from the request arriving to its response, by route.",
    ["service", "route", "method"],
    registry=REGISTRY,
)
OUTBOX_PUBLISHED = Counter(
    "goshop_outbox_published_total", "Outbox rows produced to Kafka and marked published.", ["table"], registry=REGISTRY
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "goshop_outbox_publish_failures_total",
    "Outbox rows whose produce failed (each is retried with backoff).",
    ["table"],
    registry=REGISTRY,
)
CONSUMER_EVENTS = Counter(
    "goshop_consumer_events_total",
    "Events a consumer handled, by outcome (retried: batches put back for a database outage or a refused park).",
    ["consumer", "outcome"],
    registry=REGISTRY,
)
# ``reason`` is a class (goshop_common.messaging.deadletters.REASONS), never
# the error's text, so the series stay few.
EVENTS_PARKED = Counter(
    "goshop_events_parked_total",
    "Poison events a consumer parked on <topic>.dlq, by the topic they came from and reason class.",
    ["consumer", "topic", "reason"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "goshop_consumer_lag",
    "Records on an assigned partition not yet fetched: highwater minus position.",
    ["consumer", "topic", "partition"],
    registry=REGISTRY,
)
RETENTION_DELETED = Counter(
    "goshop_retention_deleted_total",
    "Expired rows the maintenance worker deleted, by table.",
    ["table"],
    registry=REGISTRY,
)
RETENTION_LAST_SUCCESS = Gauge(
    "goshop_retention_last_success_timestamp_seconds",
    "When the maintenance worker last deleted a table's expired rows to the end (Unix time).",
    ["table"],
    registry=REGISTRY,
)
DB_POOL_CONNECTIONS = Gauge(
    "goshop_db_pool_connections", "Pooled database connections, by state.", ["service", "state"], registry=REGISTRY
)
DB_POOL_SIZE = Gauge("goshop_db_pool_size", "The pool's configured size.", ["service"], registry=REGISTRY)
ORDERS_TIMED_OUT = Counter(
    "goshop_orders_payment_timeouts_total",
    "Orders cancelled because their payment did not come in time (reason payment_timeout).",
    registry=REGISTRY,
)

EXPORTED = (
    "goshop_http_requests_total",
    "goshop_http_request_duration_seconds",
    "goshop_outbox_backlog",
    "goshop_outbox_oldest_pending_age_seconds",
    "goshop_outbox_published_total",
    "goshop_outbox_publish_failures_total",
    "goshop_consumer_events_total",
    "goshop_events_parked_total",
    "goshop_consumer_lag",
    "goshop_retention_deleted_total",
    "goshop_retention_last_success_timestamp_seconds",
    "goshop_db_pool_connections",
    "goshop_db_pool_size",
    "goshop_orders_payment_timeouts_total",
)


class OutboxCollector(Collector):
    """Backlog and oldest pending age of every watched outbox, queried at
    scrape time: a gauge set by the relay would go stale exactly when the
    relay is stuck, which is when it matters."""

    def __init__(self) -> None:
        self._tables: dict[str, tuple[sa.Engine, sa.Table]] = {}
        # A scrape runs on a server's thread, not on the one that calls watch().
        self._lock = threading.Lock()

    def watch(self, engine: sa.Engine, table: sa.Table) -> None:
        """Watch ``table`` through ``engine``; watching it again replaces the engine."""
        with self._lock:
            self._tables[f"{table.schema}.{table.name}"] = (engine, table)

    def forget(self, table: sa.Table) -> None:
        """Stop reporting ``table``: its series vanish from the next scrape."""
        with self._lock:
            self._tables.pop(f"{table.schema}.{table.name}", None)

    def describe(self) -> Iterable[Metric]:
        # The names register() checks for clashes. This registry does not call
        # collect() to learn them (no auto_describe): without describe() it
        # would check none.
        return self._families()

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        backlog = GaugeMetricFamily("goshop_outbox_backlog", "Outbox rows not yet published.", labels=["table"])
        age = GaugeMetricFamily(
            "goshop_outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox row (0 when none is pending).",
            labels=["table"],
        )
        return backlog, age

    def collect(self) -> Iterator[Metric]:
        backlog, age = self._families()
        # Queried outside the lock: a slow database must not hold up watch().
        with self._lock:
            tables = list(self._tables.items())
        for name, (engine, table) in tables:
            try:
                pending, oldest_age = _outbox_backlog(engine, table)
            except sa.exc.SQLAlchemyError as exc:
                # A missing series says "unknown"; a 0 would say "all clear".
                log.warning("outbox backlog unavailable", extra={"table": name, "error": exc.__class__.__name__})
                continue
            backlog.add_metric([name], pending)
            age.add_metric([name], oldest_age)
        yield backlog
        yield age


def _outbox_backlog(engine: sa.Engine, table: sa.Table) -> tuple[int, float]:
    # Both ends of the age from the database's clock: the process's may differ.
    query = sa.select(sa.func.count(), sa.func.min(table.c.created_at), sa.func.now()).where(
        table.c.published_at.is_(None)
    )
    with engine.connect() as connection:
        pending, oldest, now = connection.execute(query).one()
    return pending, (now - oldest).total_seconds() if oldest is not None else 0.0


OUTBOXES = OutboxCollector()
REGISTRY.register(OUTBOXES)


def observe_pool(service: str, engine: sa.Engine) -> None:
    """Set the pool gauges from ``engine``'s pool (a QueuePool; others have no size)."""
    pool = engine.pool
    if not isinstance(pool, sa.QueuePool):
        return
    checked_out, idle, size = pool.checkedout(), pool.checkedin(), pool.size()
    DB_POOL_CONNECTIONS.labels(service, "checked_out").set(checked_out)
    DB_POOL_CONNECTIONS.labels(service, "idle").set(idle)
    DB_POOL_SIZE.labels(service).set(size)


def exposition() -> bytes:
    """The whole registry in Prometheus' text format."""
    return generate_latest(REGISTRY)


def metrics_view(request: Request) -> Response:
    # The pool is read now, at scrape time, like the outbox backlog. An app
    # without a database has no dbengine and no pool series.
    engine = getattr(request.registry, "dbengine", None)
    if engine is not None:
        observe_pool(request.registry.goshop_service, engine)
    response = Response(body=exposition())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def metrics_tween_factory(handler: Callable[[Request], Response], registry: Registry) -> Callable[[Request], Response]:
    """The tween that counts and times every request, by route and status."""
    service = registry.goshop_service
    # (route, method, status) -> the two series' children. labels() takes the
    # metric's lock and builds its key on each call; the set of keys is
    # small (routes x methods x statuses) and each child is the same object
    # every time, so a race only looks one up twice.
    series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def metrics_tween(request: Request) -> Response:
        started = time.perf_counter()
        status = 500  # what the server answers when an exception gets past every view
        try:
            response = handler(request)
            status = response.status_code
            return response
        finally:
            # The route's name, never the path: ids in paths would make a new
            # series per order.
            route = request.matched_route.name if request.matched_route is not None else UNMATCHED
            method = request.method if request.method in METHODS else "other"
            key = (route, method, status)
            children = series.get(key)
            if children is None:
                children = series[key] = (
                    HTTP_REQUESTS.labels(service, route, method, str(status)),
                    HTTP_DURATION.labels(service, route, method),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - started)

    return metrics_tween


def add_metrics_endpoint(config: Configurator) -> None:
    """``GET /metrics``: the process's registry as Prometheus text. Only for an
    internal app: the series name every route and the pools' sizes."""
    config.add_route("metrics", "/metrics")
    config.add_view(metrics_view, route_name="metrics", request_method="GET")


def includeme(config: Configurator) -> None:
    """Request metrics for the app; ``config.registry.goshop_service`` names it
    in the ``service`` label. No ``/metrics`` route: see add_metrics_endpoint."""
    # Right under the request log, so the status counted is the one logged and
    # sent: exception views' answers and the body limit's 413 included.
    config.add_tween(
        "goshop_common.observability.metrics.metrics_tween_factory",
        under=("goshop_common.web.requestlog.request_log_tween_factory", INGRESS),
    )
