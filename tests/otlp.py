"""An OTLP/HTTP trace receiver for the tests: what a collector or Jaeger
does with goshop's exports, reduced to keeping the spans.

It speaks the real protocol: ``POST /v1/traces`` with a protobuf
``ExportTraceServiceRequest`` (gzip or not), answered with an
``ExportTraceServiceResponse``; the spans are decoded with
``opentelemetry-proto``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import http.server
import threading
from collections.abc import Iterator

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

KINDS = {
    ProtoSpan.SPAN_KIND_INTERNAL: "internal",
    ProtoSpan.SPAN_KIND_SERVER: "server",
    ProtoSpan.SPAN_KIND_CLIENT: "client",
    ProtoSpan.SPAN_KIND_PRODUCER: "producer",
    ProtoSpan.SPAN_KIND_CONSUMER: "consumer",
}


STATUSES = {1: "ok", 2: "error"}


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return None if kind is None else getattr(any_value, kind)


@dataclasses.dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict
    links: tuple[str, ...]  # the trace ids linked to
    status: str

    def __repr__(self) -> str:
        return f"<{self.service}: {self.kind} {self.name!r} {self.span_id} <- {self.parent_id}>"


class Receiver:
    """Spans received, in arrival order; ``requests`` counts the exports."""

    def __init__(self):
        self.spans: list[Span] = []
        self.requests = 0
        self._lock = threading.Lock()

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            kind=KINDS.get(span.kind, "unspecified"),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex() or None,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=tuple(link.trace_id.hex() for link in span.links),
                            status=STATUSES.get(span.status.code, "unset"),
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans += spans

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def find(self, **where) -> list[Span]:
        """Spans whose fields (``name=``, ``service=``, ...) are as given."""
        with self._lock:
            spans = list(self.spans)
        return [span for span in spans if all(getattr(span, k) == v for k, v in where.items())]


@contextlib.contextmanager
def otlp_receiver() -> Iterator[tuple[Receiver, int]]:
    """A receiver on 127.0.0.1; yields it and its port."""
    receiver = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            receiver.add(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
