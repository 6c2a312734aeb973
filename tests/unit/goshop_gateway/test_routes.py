"""The gateway's upstream routes are the services' own declarations: the
committed table is current, and the gateway serves each route as declared."""

import re
from pathlib import Path

import pytest
import webtest

from goshop_devtools import gateway_routes
from goshop_devtools.settings import settings_of
from goshop_gateway import make_app, upstream_routes
from goshop_gateway.upstream import UpstreamResponse
from goshop_gateway.upstream_routes import ROUTES


class RecordingUpstreams:
    """Stands in for the gateway's upstream client: answers 200, remembers each call."""

    def __init__(self, urls):
        self.urls = urls
        self.calls = []

    def request(self, upstream, method, path, headers, body, timeout=None):
        self.calls.append((upstream, method, path, timeout))
        return UpstreamResponse(200, [("Content-Type", "application/json")], b"{}")


@pytest.fixture
def gateway():
    settings = settings_of(
        {},
        environ={
            "GOSHOP_ENV": "test",
            "GOSHOP_UPSTREAM_READ_TIMEOUT_SECONDS": "1",
            "GOSHOP_OLLAMA_TIMEOUT_SECONDS": "2",
        },
    )
    app = make_app(settings)
    app.registry.upstreams = RecordingUpstreams(app.registry.upstreams.urls)
    return webtest.TestApp(app)


def test_the_committed_route_table_is_what_the_services_declare():
    assert gateway_routes.declared_routes() == ROUTES, (
        "a service's routes changed: run `make gateway-routes` and commit the result"
    )


def test_the_committed_table_is_the_generators_own_text(tmp_path, capsys):
    written = tmp_path / "upstream_routes.py"
    gateway_routes.main(written)
    assert written.read_text() == Path(upstream_routes.__file__).read_text(), "edited by hand? regenerate it"
    assert capsys.readouterr().out == f"wrote {written}\n"


def test_the_gateway_serves_every_upstream_route_under_its_name_with_its_methods(gateway):
    services = gateway.app.registry.cornice_services
    for route in ROUTES:
        if route.page:
            continue
        served = services[route.path]
        assert served.name == route.name
        assert set(served.defined_methods) - {"HEAD"} == set(route.methods), route.path


def test_a_consoles_pages_are_plain_routes_outside_the_api_services(gateway):
    from pyramid.interfaces import IRoutesMapper

    pages = [route for route in ROUTES if route.page]
    assert {route.name for route in pages} >= {"ops_console_home", "ops_console_order", "ops_console_replay"}
    mapper = gateway.app.registry.getUtility(IRoutesMapper)
    for route in pages:
        assert mapper.get_route(route.name).pattern == route.path
        assert route.path not in gateway.app.registry.cornice_services
        assert all(auth is None for auth in route.methods.values()), "a page's caller is checked by its upstream"


def test_a_page_answers_only_the_methods_its_upstream_declares(gateway):
    gateway.request("/ops/signout", method="GET", status=404)
    gateway.request("/ops/parked", method="POST", status=404)
    assert gateway.app.registry.upstreams.calls == []


def _sample(path: str) -> str:
    # Every placeholder filled: an id where a route takes one, a word elsewhere.
    path = path.replace("{id}", "00000000-0000-0000-0000-000000000001")
    return re.sub(r"{\w+}", "sample", path)


@pytest.mark.parametrize(
    ("route", "method"), [(r, m) for r in ROUTES for m, auth in r.methods.items() if auth == "bearer"]
)
def test_a_route_that_needs_an_access_token_is_refused_at_the_edge_without_one(gateway, route, method):
    response = gateway.request(_sample(route.path), method=method, status=401)
    assert response.json == {"error": "unauthorized"}
    assert gateway.app.registry.upstreams.calls == []


@pytest.mark.parametrize(
    ("route", "method"), [(r, m) for r in ROUTES for m, auth in r.methods.items() if auth != "bearer"]
)
def test_any_other_route_is_forwarded_to_its_upstream_on_the_same_path(gateway, route, method):
    path = _sample(route.path)
    gateway.request(path, method=method, headers={"Authorization": "Bearer the-operators-token"}, status=200)
    [(upstream, forwarded_method, forwarded_path, timeout)] = gateway.app.registry.upstreams.calls
    assert (upstream, forwarded_method, forwarded_path) == (route.upstream, method, path)
    # The read timeout of a route that waits for an LLM is the gateway's plus the LLM's.
    assert (timeout.read if timeout else None) == (3.0 if route.waits_for_llm else None)


def test_an_unknown_method_on_an_upstream_route_is_a_405_at_the_edge(gateway):
    response = gateway.request("/v1/users/login", method="DELETE", status=405)
    assert response.json == {"error": "method not allowed"}
    assert gateway.app.registry.upstreams.calls == []
