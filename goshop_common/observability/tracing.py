"""Traces: OpenTelemetry, off unless an OTLP endpoint is set.

``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
turns it on: the process builds the SDK's tracer provider, exports its spans
over OTLP/HTTP, and installs the kept instrumentations — WSGI for the public
app (named after the matched Pyramid route here), SQLAlchemy and
kafka-python (the outboxer's sends). The hand-written spans are only where no
instrumentation exists: the gateway's upstream calls (its own client,
goshop_gateway.upstream), the outbox's create, the relay's claim/send/mark
(goshop_outboxer.relay), the consumer's process and inbox decision, the
payment-timeout sweep.

The ``OTEL_*`` variables are the SDK's own, read by the SDK as documented for
every OpenTelemetry SDK (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``/``_ARG``, ``OTEL_EXPORTER_OTLP_*``, ``OTEL_BSP_*``,
``OTEL_SDK_DISABLED``). They are deliberately not goshop settings
(goshop_common.settings): a second reader of variables the SDK parses by its
own rules (signal endpoints, ``/v1/traces`` appended to the base endpoint,
header lists) could only disagree with it, and an ini key for them would be
one the SDK never sees. goshop reads one fact from them: whether an endpoint
is set.

Unset, tracing costs next to nothing: the SDK is not imported, no middleware
wraps the app, nothing is instrumented, no log record is touched, and the
hand-written spans sit behind ``enabled()``. No trace context is read, stored
(the outbox's and inbox's ``traceparent`` stay NULL) or sent: the gateway
drops a client's ``traceparent`` either way (goshop_gateway.views), so an
untraced shop forwards none.

Trace context is continued from a caller only when its address is in
``GOSHOP_TRUSTED_PROXIES`` — the rule ``X-Forwarded-For`` follows
(goshop_common.web.clientip). The gateway trusts nobody by default, so a
trace always starts there; the services trust the gateway.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from goshop_common.web.clientip import peer_is_trusted

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    import sqlalchemy as sa
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
    from opentelemetry.util.types import Attributes
    from pyramid.config import Configurator
    from pyramid.registry import Registry
    from pyramid.request import Request
    from pyramid.response import Response
    from pyramid.router import Router

    from goshop_common.settings import HttpSettings

log = logging.getLogger("goshop.tracing")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# The SDK's variables goshop documents (docs/operations.md, "Traces") and its deployment
# files may set; the SDK reads each of them itself.
OTEL_VARIABLES = (
    *ENDPOINT_VARIABLES,
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_PROPAGATORS",
    "OTEL_SEMCONV_STABILITY_OPT_IN",
    "OTEL_SDK_DISABLED",
)
# The headers by which a caller hands over its trace (W3C Trace Context and Baggage).
CONTEXT_HEADERS = ("traceparent", "tracestate", "baggage")
_CONTEXT_ENVIRON_KEYS = tuple("HTTP_" + name.upper() for name in CONTEXT_HEADERS)
# Probes and scrapes: a trace each would bury the shop's real work.
UNTRACED_PATHS = frozenset({"/live", "/ready", "/metrics"})
TRACER_NAME = "goshop"

_W3C = TraceContextTextMapPropagator()
_lock = threading.Lock()
_enabled = False


def enabled() -> bool:
    """Whether this process traces (``configure`` found an endpoint)."""
    return _enabled


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """An OTLP endpoint is set, and the SDK is not disabled."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def configure(service: str) -> bool:
    """Turn tracing on for this process if an endpoint is set: True when it
    is on. Once per process; later calls return what the first decided. ``service`` names the process when
    ``OTEL_SERVICE_NAME`` (or ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``)
    does not: ``goshop-<service>``."""
    global _enabled
    with _lock:
        if _enabled:
            return True
        if not wanted():
            return False
        _install(service)
        _enabled = True
    log.info("tracing on", extra={"service": service})
    return True


def _install(service: str) -> None:
    # Imported here: a process that does not trace never loads the SDK.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The stable HTTP and database conventions (http.request.method,
    # url.path, db.system.name, ...), not the instrumentations' older default
    # names. Read by each instrumentation when it is set up, below.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http,database")
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"goshop-{service}"}))
    # The sampler OTEL_TRACES_SAMPLER names (parentbased_always_on by
    # default), as the SDK builds it, behind WorkOutsideRequests.
    configured = TracerProvider(resource=resource, shutdown_on_exit=False).sampler
    # WorkOutsideRequests is a Sampler by its methods: subclassing it would
    # import the SDK where tracing is off.
    provider = TracerProvider(resource=resource, sampler=cast("Sampler", WorkOutsideRequests(configured)))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # Endpoint, headers, timeout and compression from OTEL_EXPORTER_OTLP_*.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _instrument_libraries()
    _add_trace_ids_to_log_records()


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.kafka import KafkaInstrumentor

    KafkaInstrumentor().instrument(produce_hook=_name_send_span)


def instrument_engine(engine: sa.Engine) -> None:
    """Trace ``engine``'s statements (goshop_common.db.session.make_engine
    calls this for every engine), when this process traces.

    The SQLAlchemy instrumentation's own ``instrument()`` cannot be used: it
    declares SQLAlchemy < 2.1, and past that check it patches
    ``sqlalchemy.ext.asyncio``, which on 2.1 needs greenlet (not installed).
    Its per-engine tracer, which ``instrument(engine=...)`` would build, is
    built here instead; the engine events it listens to (before/after cursor
    execute, handle_error, pool checkout) are 2.1's too, and
    tests/e2e/test_tracing.py reads the spans they make."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__
    from opentelemetry.metrics import get_meter

    meter = get_meter("opentelemetry.instrumentation.sqlalchemy", __version__)
    usage = meter.create_up_down_counter("db.client.connections.usage", unit="connections")
    EngineTracer(trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", __version__), engine, usage)


def _name_send_span(span: trace.Span, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """kafka-python's instrumentation names its span ``<topic> send`` with
    the conventions of 2022 (``messaging.destination``): give it today's name
    and attributes as well. Called before the send, with its arguments."""
    if not span.is_recording():
        return
    topic = args[0] if args else kwargs.get("topic")
    key = args[2] if len(args) > 2 else kwargs.get("key")
    span.update_name(f"send {topic}")
    span.set_attributes(
        {
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
        }
    )
    if isinstance(key, bytes):
        span.set_attribute("messaging.kafka.message.key", key.decode(errors="replace"))


class WorkOutsideRequests:
    """The configured sampler, except for two kinds of root span that would
    be a trace of their own each: a client call made outside any trace (the
    outboxer's and consumers' polling queries, a health check's ``SELECT 1``)
    and a probe or scrape (``/live``, ``/ready``, ``/metrics``). Both are
    dropped; everything else is the configured sampler's to decide."""

    def __init__(self, delegate: Sampler):
        from opentelemetry.sdk.trace.sampling import Decision, SamplingResult

        self.delegate = delegate
        self._drop = SamplingResult(Decision.DROP)

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid:
            if kind == trace.SpanKind.CLIENT and not links:
                return self._drop
            if kind == trace.SpanKind.SERVER and (attributes or {}).get("url.path") in UNTRACED_PATHS:
                return self._drop
        return self.delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"WorkOutsideRequests{{{self.delegate.get_description()}}}"


# -- HTTP ------------------------------------------------------------------------


class TracedApp:
    """A WSGI app behind the OpenTelemetry WSGI middleware, behind a filter
    that drops the trace context of an untrusted peer. Keeps the app's
    ``registry``, which goshop's server and tests read."""

    def __init__(self, app: Router, trusted: tuple[str, ...]):
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

        self.registry = app.registry
        self.trusted = trusted
        self._traced = OpenTelemetryMiddleware(app)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not continues_trace(environ.get("REMOTE_ADDR"), self.trusted):
            for key in _CONTEXT_ENVIRON_KEYS:
                environ.pop(key, None)
        answer: Iterable[bytes] = self._traced(environ, start_response)
        return answer


# A service's peers are few (the gateway's pods, an ingress): each address is
# parsed and checked once, not on every request.
@functools.lru_cache(maxsize=1024)
def continues_trace(remote_addr: str | None, trusted: tuple[str, ...]) -> bool:
    """Whether a request from ``remote_addr`` may hand over its trace: the
    peer is a trusted proxy (the gateway for a service, an ingress for the
    gateway). The peer, not the X-Forwarded-For chain: the context is what
    the peer itself sent."""
    return peer_is_trusted(remote_addr, trusted)


def traced_app(app: Router, settings: HttpSettings) -> WSGIApplication:
    """``app`` traced when this process traces, else ``app`` itself."""
    if not _enabled:
        plain: WSGIApplication = app
        return plain
    return TracedApp(app, settings.trusted_proxies)


def route_tween_factory(handler: Callable[[Request], Response], registry: Registry) -> Callable[[Request], Response]:
    """Names the request's server span after its route, as the conventions
    ask (``GET /v1/orders/{id}``, with ``http.route``), once routing is done;
    a request that matched no route keeps the method alone."""

    def route_tween(request: Request) -> Response:
        try:
            return handler(request)
        finally:
            span = trace.get_current_span()
            if span.is_recording():
                route = request.matched_route
                if route is not None:
                    span.update_name(f"{request.method} {route.pattern}")
                    span.set_attribute("http.route", route.pattern)
                else:
                    span.update_name(request.method)

    return route_tween


def includeme(config: Configurator) -> None:
    """The route tween, only when this process traces."""
    if _enabled:
        from pyramid.tweens import INGRESS

        config.add_tween("goshop_common.observability.tracing.route_tween_factory", under=INGRESS)


# -- trace context as text ---------------------------------------------------------


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, None when there is none
    (or tracing is off): what an outbox or inbox row keeps."""
    if not _enabled:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def within(span_context: trace.SpanContext | None) -> Iterator[None]:
    """Make the span ``span_context`` names current (a span that may have
    ended already), so that what starts inside is its child: a consumer's
    parked copy is sent after its ``process`` span, in that span's trace.
    Nothing when tracing is off or there is no such span."""
    if not _enabled or span_context is None or not span_context.is_valid:
        yield
        return
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(span_context)))
    try:
        yield
    finally:
        otel_context.detach(token)


def context_from(traceparent: str | None) -> otel_context.Context:
    """The context a stored ``traceparent`` stands for (an empty one for None)."""
    if not traceparent:
        return otel_context.Context()
    return _W3C.extract({"traceparent": traceparent}, context=otel_context.Context())


def span_context_from(traceparent: str | None) -> trace.SpanContext | None:
    """The span context of a stored ``traceparent``, None if it holds none."""
    context = trace.get_current_span(context_from(traceparent)).get_span_context()
    return context if context.is_valid else None


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id (32 hex digits) in a ``traceparent``, None if it holds none."""
    context = span_context_from(traceparent)
    return None if context is None else format(context.trace_id, "032x")


def ids_of(span: trace.Span) -> dict[str, str]:
    """``{"trace_id": ..., "span_id": ...}`` of a span, for a log line
    written after the span ended; empty for a span that is not recorded."""
    context = span.get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


def now_ns() -> int:
    """A span start or end time (the SDK's clock: nanoseconds since the epoch)."""
    return time.time_ns()


# -- logs ------------------------------------------------------------------------------


def _add_trace_ids_to_log_records() -> None:
    """Every log record made while a sampled span is current carries its
    trace and span ids, taken in the thread that logs (the line itself is
    written by another: goshop_common.observability.logs). Kept under private
    names, so that a line's own ``trace_id=`` (a consumer's, written after
    its span ended) wins; the formatters write them as ``trace_id`` and
    ``span_id``."""
    make_record = logging.getLogRecordFactory()

    def record_with_trace_ids(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        context = trace.get_current_span().get_span_context()
        if context.is_valid and context.trace_flags.sampled:
            record._trace_id = format(context.trace_id, "032x")
            record._span_id = format(context.span_id, "016x")
        return record

    logging.setLogRecordFactory(record_with_trace_ids)
