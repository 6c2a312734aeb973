"""What the gateway tells an upstream about the client: one address, the one
it believes, whatever the client wrote in its own forwarding headers."""

import pytest
from pyramid.config import Configurator
from pyramid.request import Request, apply_request_extensions

from goshop_devtools.settings import settings_of
from goshop_gateway.views import forward_headers


def _request(headers, remote="203.0.113.9", trusted="none"):
    settings = settings_of({}, environ={"GOSHOP_ENV": "test", "GOSHOP_TRUSTED_PROXIES": trusted})
    config = Configurator()
    config.registry.goshop_settings = settings
    config.include("goshop_common.web.clientip")
    config.commit()
    request = Request.blank("/v1/orders", headers=headers, remote_addr=remote)
    request.registry = config.registry
    apply_request_extensions(request)
    request.request_id = "rid-1"
    return request


def _forwarded(*args, **kwargs) -> dict[str, str]:
    headers = forward_headers(_request(*args, **kwargs))
    names = [name.lower() for name, _ in headers]
    assert len(names) == len(set(names)), f"a header is sent twice: {headers}"
    return dict(headers)


def test_the_upstream_gets_the_gateways_request_id_and_the_peer_as_the_client():
    forwarded = _forwarded({"X-Request-ID": "client-chosen", "Authorization": "Bearer t"})
    assert forwarded["X-Request-ID"] == "rid-1"  # the one the gateway logged
    assert forwarded["X-Forwarded-For"] == "203.0.113.9"
    assert forwarded["Authorization"] == "Bearer t"


def test_at_the_edge_a_clients_own_forwarded_for_is_replaced_not_appended_to():
    forwarded = _forwarded({"X-Forwarded-For": "198.51.100.1, 10.0.0.1"}, remote="203.0.113.9")
    assert forwarded["X-Forwarded-For"] == "203.0.113.9"


@pytest.mark.parametrize(
    "header", ["Forwarded", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Proto", "X-Real-IP"]
)
def test_a_clients_other_forwarding_headers_are_not_passed_on(header):
    forwarded = _forwarded({header: "for=198.51.100.1;host=evil.example;proto=https"})
    assert forwarded.get(header) != "for=198.51.100.1;host=evil.example;proto=https"
    assert forwarded["X-Forwarded-Proto"] == "http"


def test_behind_a_trusted_ingress_the_address_it_saw_is_forwarded_alone():
    forwarded = _forwarded(
        {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}, remote="10.244.0.7", trusted="10.244.0.0/16"
    )
    assert forwarded["X-Forwarded-For"] == "203.0.113.9"


def test_an_ipv4_mapped_peer_is_forwarded_as_ipv4():
    assert _forwarded({}, remote="::ffff:203.0.113.9")["X-Forwarded-For"] == "203.0.113.9"
