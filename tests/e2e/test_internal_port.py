"""The public and the internal port of a served process, over real sockets: the
internet's port answers ``/metrics`` with a 404 and the gateway's ``/ready``
with a bare yes or no; the internal port has the metrics (counting the public
requests) and the gateway's upstream states."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from goshop_devtools.postgres import free_port, port_in_use
from tests.e2e.conftest import ROOT, spawn, stop, wait_for
from tests.support import CannedServer

SERVE = "goshop_common.web.serve"


def _ini(service: str, kind: str = "development") -> str:
    return str(ROOT / f"goshop_{service}" / f"{kind}.ini")


def _clean_env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSHOP_")}
    env["GOSHOP_DEV_DIR"] = settings.dev_dir
    return env


def get(port: int, path: str) -> tuple[int, str, str]:
    """Status, Content-Type and body text of ``GET 127.0.0.1:port/path``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    status, content_type, text = get(port, "/metrics")
    assert status == 200, text
    assert content_type.startswith("text/plain"), content_type
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_total(samples, **labels) -> float:
    return samples.get(("goshop_http_requests_total", frozenset(labels.items())), 0)


class StubUpstream(CannedServer):
    """An upstream whose ``/ready`` answers what the test says."""

    def __init__(self):
        self.status = 200
        super().__init__(self._answer)

    def _answer(self, path: str) -> tuple[int, bytes]:
        body = json.dumps({"status": "ok"} if self.status == 200 else {"error": "down"}).encode()
        return (self.status if path == "/ready" else 404), body


@pytest.fixture(scope="module")
def shop(settings, tmp_path_factory):
    """users and the gateway as served processes, each with a public and an
    internal port; orders and payments are users again (only their /ready is
    asked), ops is a stub whose readiness the test switches."""
    log_dir = tmp_path_factory.mktemp("internal-port")
    env = _clean_env(settings)
    env["GOSHOP_DATABASE_URL"] = settings.database_url
    ports = {name: (free_port(), free_port()) for name in ("users", "gateway")}
    ops = StubUpstream()
    users_url = f"http://127.0.0.1:{ports['users'][0]}"
    env.update(
        {
            "GOSHOP_USERS_URL": users_url,
            "GOSHOP_JWKS_URL": f"{users_url}/.well-known/jwks.json",
            "GOSHOP_ORDERS_URL": users_url,
            "GOSHOP_PAYMENTS_URL": users_url,
            "GOSHOP_OPS_URL": ops.url,
        }
    )
    processes = {}
    try:
        for name in ("users", "gateway"):
            public, internal = ports[name]
            processes[name] = spawn(
                ["-m", SERVE, _ini(name), "--port", str(public), "--metrics-port", str(internal)],
                env,
                log_dir / f"{name}.log",
            )
            wait_for(public, "/live", process=processes[name])
        yield {"ports": ports, "ops": ops, "processes": processes}
    finally:
        codes = {name: stop(process) for name, process in processes.items()}
        ops.close()
    assert codes == {"users": 0, "gateway": 0}
    for public, internal in ports.values():
        assert not port_in_use(public), f"{public} still open after SIGTERM"
        assert not port_in_use(internal), f"{internal} still open after SIGTERM"


@pytest.mark.parametrize("name", ["gateway", "users"])
def test_the_public_port_answers_metrics_with_a_json_404(shop, name):
    public, _internal = shop["ports"][name]
    status, content_type, body = get(public, "/metrics")
    assert (status, content_type, json.loads(body)) == (404, "application/json", {"error": "not found"})


@pytest.mark.parametrize("name", ["gateway", "users"])
def test_the_internal_port_serves_prometheus_text_and_live_but_not_the_api(shop, name):
    _public, internal = shop["ports"][name]
    samples = scrape(internal)
    assert any(n == "goshop_http_request_duration_seconds_count" for n, _ in samples)
    assert json.loads(get(internal, "/live")[2]) == {"status": "ok"}
    # The API stays on the public port: the internal one is not a back door to it.
    status, _, body = get(internal, "/v1/users/me")
    assert (status, json.loads(body)) == (404, {"error": "not found"})


def test_the_internal_ports_count_the_public_requests_and_not_the_scrapes(shop):
    gateway_public, gateway_internal = shop["ports"]["gateway"]
    users_internal = shop["ports"]["users"][1]
    shop["ops"].status = 200
    before = {"gateway": scrape(gateway_internal), "users": scrape(users_internal)}
    for _ in range(3):
        assert get(gateway_public, "/live")[0] == 200
    for _ in range(2):
        # Each asks users, "orders" and "payments" (all the users process here): 3 requests to users.
        assert get(gateway_public, "/ready")[0] == 200
    get(gateway_public, "/metrics")
    after = {"gateway": scrape(gateway_internal), "users": scrape(users_internal)}

    def moved(name, **labels):
        return requests_total(after[name], **labels) - requests_total(before[name], **labels)

    ok = {"method": "GET", "status": "200"}
    assert moved("gateway", service="gateway", route="live", **ok) == 3
    assert moved("gateway", service="gateway", route="ready", **ok) == 2
    assert moved("users", service="users", route="ready", **ok) == 6
    # The public /metrics is an unmatched route there, counted as such.
    assert moved("gateway", service="gateway", route="unmatched", method="GET", status="404") == 1
    # The scrapes themselves (and the internal /live) are not API requests.
    for name in ("gateway", "users"):
        routes = {dict(labels)["route"] for n, labels in after[name] if n == "goshop_http_requests_total"}
        assert "metrics" not in routes, name


def test_the_public_gateway_ready_says_yes_or_no_and_the_internal_one_names_the_upstreams(shop):
    gateway_public, gateway_internal = shop["ports"]["gateway"]
    ops = shop["ops"]
    ops.status = 200
    status, _, body = get(gateway_public, "/ready")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, _, body = get(gateway_internal, "/ready")
    everyone = {"ops": "ok", "orders": "ok", "payments": "ok", "users": "ok"}
    assert (status, json.loads(body)) == (200, {"status": "ok", "upstreams": everyone})

    ops.status = 503
    try:
        status, _, body = get(gateway_public, "/ready")
        assert (status, json.loads(body)) == (503, {"error": "not ready"})
        assert "ops" not in body
        status, _, body = get(gateway_internal, "/ready")
        assert status == 503
        assert json.loads(body) == {
            "error": "not ready: ops",
            "upstreams": {**everyone, "ops": "not ready (503)"},
        }
    finally:
        ops.status = 200


def test_serve_takes_the_metrics_port_from_the_ini_and_host_from_the_command_line(settings, tmp_path):
    # production.ini listens on 0.0.0.0 with goshop.metrics_port = 9080; --host
    # moves both servers to loopback, and the internal one keeps the ini's port.
    metrics_port = 9080
    if port_in_use(metrics_port):
        pytest.skip(f"port {metrics_port} is taken (a running shop?): cannot check the ini's default")
    env = _clean_env(settings)
    env.update(
        {
            "GOSHOP_OPS_TOKEN": "an-operator-token-that-is-long-enough-for-production",
            "GOSHOP_JWKS_URL": f"http://127.0.0.1:{free_port()}/.well-known/jwks.json",
            "GOSHOP_PUBLIC_URL": "https://shop.example",
            # Production wants every upstream named; /live asks none of them.
            **{
                f"GOSHOP_{name}_URL": f"http://127.0.0.1:{free_port()}"
                for name in ("USERS", "ORDERS", "PAYMENTS", "OPS")
            },
        }
    )
    port = free_port()
    log_path = tmp_path / "gateway.log"
    process = spawn(
        ["-m", SERVE, _ini("gateway", "production"), "--host", "127.0.0.1", "--port", str(port)], env, log_path
    )
    try:
        wait_for(port, "/live", process=process)
        assert get(port, "/metrics")[0] == 404
        assert scrape(metrics_port)
        log = log_path.read_text()
        assert f"Serving on http://127.0.0.1:{port}" in log
        assert f"on http://127.0.0.1:{metrics_port}" in log
    finally:
        assert stop(process) == 0, log_path.read_text()
    assert not port_in_use(metrics_port)


def test_metrics_port_0_serves_no_internal_app(settings, tmp_path):
    env = _clean_env(settings)
    port = free_port()
    log_path = tmp_path / "gateway.log"
    process = spawn(["-m", SERVE, _ini("gateway"), "--port", str(port), "--metrics-port", "0"], env, log_path)
    try:
        wait_for(port, "/live", process=process)
        assert get(port, "/metrics")[0] == 404
    finally:
        assert stop(process) == 0
    log = log_path.read_text()
    assert f"Serving on http://127.0.0.1:{port}" in log
    assert "Serving /metrics" not in log
