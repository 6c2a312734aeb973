"""The gateway's upstream calls in a trace: a client span each, its context
sent to the upstream as ``traceparent``; untraced, neither, and no
OpenTelemetry call at all. Real sockets; spans kept in memory by an SDK
provider of the test's own, the process's global one left alone."""

from __future__ import annotations

import socket

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from goshop_common.observability import tracing
from goshop_gateway.upstream import UpstreamFailure, Upstreams
from tests.support import served

# The gateway's public URL, under which an upstream's Location is given.
PUBLIC_URL = "https://shop.example"


def _recording_app(seen: list[dict]):
    def app(environ, start_response):
        seen.append({k: v for k, v in environ.items() if k.startswith("HTTP_")})
        status = "404 Not Found" if environ["PATH_INFO"] == "/missing" else "201 Created"
        start_response(status, [("Content-Length", "2")])
        return [b"{}"]

    return app


@pytest.fixture
def spans(monkeypatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_enabled", True)
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer(tracing.TRACER_NAME))
    return exporter


def test_traced_an_upstream_call_is_a_client_span_whose_context_the_upstream_gets(spans):
    seen = []
    with served(_recording_app(seen)) as url:
        upstreams = Upstreams({"orders": url + "/base"}, connect_timeout=1, read_timeout=2, public_url=PUBLIC_URL)
        assert upstreams.request("orders", "POST", "/v1/orders?x=1", [("X-Request-ID", "r1")], b"{}").status == 201
    [span] = spans.get_finished_spans()
    port = int(url.rsplit(":", 1)[1])
    assert (span.name, span.kind) == ("POST", trace.SpanKind.CLIENT)
    assert dict(span.attributes) == {
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": port,
        "url.full": f"{url}/base/v1/orders?x=1",
        "http.response.status_code": 201,
    }
    assert span.status.status_code == trace.StatusCode.UNSET
    [headers] = seen
    assert headers["HTTP_X_REQUEST_ID"] == "r1"
    _version, trace_id, parent_id, _flags = headers["HTTP_TRACEPARENT"].split("-")
    assert (trace_id, parent_id) == (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")


def test_traced_an_error_answer_or_no_answer_is_an_error_span(spans):
    with served(_recording_app([])) as url:
        assert (
            Upstreams({"orders": url}, 1, 2, public_url=PUBLIC_URL)
            .request("orders", "GET", "/missing", [], None)
            .status
            == 404
        )
    with socket.create_server(("127.0.0.1", 0)) as listener:
        nobody = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with pytest.raises(UpstreamFailure):
        Upstreams({"orders": nobody}, 1, 2, public_url=PUBLIC_URL).request("orders", "GET", "/x", [], None)
    answered, refused = spans.get_finished_spans()
    assert answered.status.status_code == refused.status.status_code == trace.StatusCode.ERROR
    assert (answered.attributes["http.response.status_code"], answered.attributes["error.type"]) == (404, "404")
    assert refused.attributes["error.type"] == "ConnectionRefusedError"
    assert refused.status.description == "upstream unavailable"
    assert "http.response.status_code" not in refused.attributes


def test_untraced_an_upstream_call_sends_no_trace_context_and_never_calls_opentelemetry(monkeypatch):
    def untouchable(*args, **kwargs):
        raise AssertionError("OpenTelemetry called while tracing is off")

    monkeypatch.setattr(tracing, "tracer", untouchable)
    monkeypatch.setattr(propagate, "inject", untouchable)
    monkeypatch.setattr(trace, "get_current_span", untouchable)
    seen = []
    with served(_recording_app(seen)) as url:
        assert (
            Upstreams({"orders": url}, 1, 2, public_url=PUBLIC_URL)
            .request("orders", "POST", "/v1/orders", [], b"{}")
            .status
            == 201
        )
    assert not tracing.enabled()
    assert not {"HTTP_TRACEPARENT", "HTTP_TRACESTATE", "HTTP_BAGGAGE"} & set(seen[0])
