"""Without an OTLP endpoint a process traces nothing: it never loads the
OpenTelemetry SDK, wraps no app, instruments no library and exports nothing.
Each case runs in a fresh interpreter, as a service starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.e2e.conftest import ROOT

# Builds the gateway and orders apps as their entry points do, then says what
# it finds: the app's type, whether the SDK was imported, the tracer provider.
_PROBE = """
import json, sys
from goshop_devtools.settings import settings_of
from goshop_gateway import make_app as gateway
from goshop_orders import make_app as orders
import kafka
from opentelemetry import trace
apps = [gateway(settings_of({}, service="gateway")), orders(settings_of({}, service="orders"))]
print(json.dumps({
    "apps": [type(app).__name__ for app in apps],
    "sdk_loaded": any(name.startswith("opentelemetry.sdk") for name in sys.modules),
    "instrumented": any(name.startswith("opentelemetry.instrumentation") for name in sys.modules),
    "provider": type(trace.get_tracer_provider()).__name__,
    "send": type(kafka.KafkaProducer.send).__name__,
}))
"""


def _probe(settings, **environ) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOSHOP_", "OTEL_"))}
    env.update({"GOSHOP_ENV": "test", "GOSHOP_DATABASE_URL": settings.database_url, "GOSHOP_DEV_DIR": settings.dev_dir})
    env.update(environ)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_without_an_endpoint_no_sdk_is_loaded_no_app_wrapped_and_no_library_instrumented(settings):
    found = _probe(settings, OTEL_SERVICE_NAME="goshop-test", OTEL_TRACES_SAMPLER="always_on")
    assert found == {
        "apps": ["Router", "Router"],
        "sdk_loaded": False,
        "instrumented": False,
        "provider": "ProxyTracerProvider",
        "send": "function",
    }


def test_with_an_endpoint_the_apps_are_traced_and_the_libraries_instrumented(settings):
    # Nothing listens there: spans are queued and dropped, never awaited.
    found = _probe(settings, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert found["apps"] == ["TracedApp", "TracedApp"]
    assert found["sdk_loaded"] is True
    assert found["provider"] == "TracerProvider"
    assert found["send"] == "BoundFunctionWrapper"
