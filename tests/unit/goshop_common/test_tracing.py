"""When goshop traces, whose trace context it believes, which spans it keeps,
and how a log line names its trace — without exporting anything."""

import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from goshop_common.observability import tracing
from goshop_common.observability.logs import ConsoleFormatter, JsonFormatter

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_on_only_with_an_otlp_endpoint_and_the_sdk_not_disabled(environ, on):
    assert tracing.wanted(environ) is on


@pytest.mark.parametrize(
    ("peer", "trusted", "continued"),
    [
        ("127.0.0.1", ("127.0.0.1/32",), True),
        ("10.1.2.3", ("10.0.0.0/8",), True),
        ("::ffff:10.1.2.3", ("10.0.0.0/8",), True),
        ("203.0.113.9", ("10.0.0.0/8",), False),
        ("127.0.0.1", (), False),  # the gateway's "none": nobody
        (None, ("127.0.0.1/32",), False),
    ],
)
def test_only_a_trusted_peer_may_hand_over_its_trace(peer, trusted, continued):
    assert tracing.continues_trace(peer, trusted) is continued


class _Registry:
    pass


def _seen_by_app(peer: str, trusted: tuple[str, ...]) -> dict:
    seen = {}

    def app(environ, start_response):
        seen.update({k: v for k, v in environ.items() if k.startswith("HTTP_")})
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    app.registry = _Registry()
    traced = tracing.TracedApp(app, trusted)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/v1/orders",
        "REMOTE_ADDR": peer,
        "wsgi.url_scheme": "http",
        "SERVER_NAME": "gateway",
        "SERVER_PORT": "8080",
        "HTTP_TRACEPARENT": TRACEPARENT,
        "HTTP_TRACESTATE": "vendor=1",
        "HTTP_BAGGAGE": "user=someone",
        "HTTP_X_REQUEST_ID": "rid",
    }
    list(traced(environ, lambda status, headers: None))
    assert traced.registry is app.registry
    return seen


def test_an_untrusted_peers_trace_context_never_reaches_the_app():
    seen = _seen_by_app("203.0.113.9", ("10.0.0.0/8",))
    assert not {"HTTP_TRACEPARENT", "HTTP_TRACESTATE", "HTTP_BAGGAGE"} & seen.keys()
    assert seen["HTTP_X_REQUEST_ID"] == "rid"


def test_a_trusted_peers_trace_context_reaches_the_app():
    seen = _seen_by_app("10.1.2.3", ("10.0.0.0/8",))
    assert seen["HTTP_TRACEPARENT"] == TRACEPARENT


def _parent(sampled: bool = True):
    context = SpanContext(int(TRACE_ID, 16), 0x00F067AA0BA902B7, is_remote=True, trace_flags=TraceFlags(sampled))
    return trace.set_span_in_context(NonRecordingSpan(context))


def _decision(sampler, kind, attributes=None, parent=None, links=None) -> Decision:
    return sampler.should_sample(parent, 1, "span", kind, attributes, links).decision


def test_a_query_or_a_call_outside_any_trace_is_not_kept():
    sampler = tracing.WorkOutsideRequests(ALWAYS_ON)
    assert _decision(sampler, SpanKind.CLIENT) == Decision.DROP
    # Inside a trace, it is the trace's.
    assert _decision(sampler, SpanKind.CLIENT, parent=_parent()) == Decision.RECORD_AND_SAMPLE


@pytest.mark.parametrize("path", ["/live", "/ready", "/metrics"])
def test_probes_and_scrapes_start_no_trace(path):
    sampler = tracing.WorkOutsideRequests(ALWAYS_ON)
    assert _decision(sampler, SpanKind.SERVER, {"url.path": path}) == Decision.DROP


def test_requests_events_and_sweeps_are_the_configured_samplers_to_decide():
    for delegate, expected in ((ALWAYS_ON, Decision.RECORD_AND_SAMPLE), (ALWAYS_OFF, Decision.DROP)):
        sampler = tracing.WorkOutsideRequests(delegate)
        assert _decision(sampler, SpanKind.SERVER, {"url.path": "/v1/checkout"}) == expected
        assert _decision(sampler, SpanKind.CONSUMER) == expected
        assert _decision(sampler, SpanKind.INTERNAL) == expected
    assert "AlwaysOnSampler" in tracing.WorkOutsideRequests(ALWAYS_ON).get_description()


@pytest.mark.parametrize("garbage", [None, "", "00-zz-00f067aa0ba902b7-01", f"00-{'0' * 32}-00f067aa0ba902b7-01"])
def test_a_stored_traceparent_gives_its_trace_id_and_anything_else_none(garbage):
    assert tracing.trace_id_of(TRACEPARENT) == TRACE_ID
    assert tracing.trace_id_of(garbage) is None


def test_untraced_a_process_stores_no_trace_context():
    assert not tracing.enabled()
    assert tracing.current_traceparent() is None


def _record(**extra) -> logging.LogRecord:
    record = logging.getLogger("goshop.request").makeRecord(
        "goshop.request", logging.INFO, __file__, 1, "request", (), None, extra=extra
    )
    record._trace_id, record._span_id = TRACE_ID, "00f067aa0ba902b7"
    return record


def test_a_log_line_made_in_a_traced_span_names_the_trace_beside_the_request_id():
    line = json.loads(JsonFormatter().format(_record(request_id="rid-1")))
    assert (line["request_id"], line["trace_id"], line["span_id"]) == ("rid-1", TRACE_ID, "00f067aa0ba902b7")
    console = ConsoleFormatter().format(_record(method="GET", path="/v1/orders", status=200, request_id="rid-1"))
    assert console.endswith(f"rid=rid-1 trace={TRACE_ID}")


def test_a_log_lines_own_trace_id_wins_over_the_current_spans():
    line = json.loads(JsonFormatter().format(_record(trace_id="a" * 32, span_id="b" * 16)))
    assert (line["trace_id"], line["span_id"]) == ("a" * 32, "b" * 16)


def test_a_line_made_outside_any_span_has_no_trace_fields():
    record = logging.getLogger("goshop").makeRecord("goshop", logging.INFO, __file__, 1, "m", (), None)
    assert "trace_id" not in json.loads(JsonFormatter().format(record))
