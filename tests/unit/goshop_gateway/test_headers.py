import pytest
from webob.headers import EnvironHeaders

from goshop_gateway.upstream import _Upstream, end_to_end_items, request_headers


def test_hop_by_hop_headers_and_those_named_in_connection_are_dropped():
    headers = {
        "Connection": "keep-alive, X-Internal",
        "Keep-Alive": "timeout=5",
        "X-Internal": "secret",
        "Transfer-Encoding": "chunked",
        "Upgrade": "websocket",
        "Proxy-Authorization": "Basic x",
        "TE": "trailers",
        "Content-Length": "10",
        "Host": "gateway",
        "Authorization": "Bearer t",
        "Content-Type": "application/json",
        "Idempotency-Key": "k",
    }
    assert dict(end_to_end_items(list(headers.items()))) == {
        "Authorization": "Bearer t",
        "Content-Type": "application/json",
        "Idempotency-Key": "k",
    }


def test_request_headers_are_named_and_ordered_as_webob_names_them():
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/checkout",
        "SERVER_NAME": "gateway",
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "gateway:8080",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "41",
        "HTTP_AUTHORIZATION": "Bearer t",
        "HTTP_X_REQUEST_ID": "abc",
        "HTTP_IDEMPOTENCY_KEY": "k-1",
        "HTTP_X_FORWARDED_FOR": "198.51.100.7, 10.0.0.1",
        "HTTP_CONTENT_TYPE": "text/plain",
        "HTTP_TRACEPARENT": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    assert request_headers(environ) == list(EnvironHeaders(environ).items())
    assert ("X-Request-Id", "abc") in request_headers(environ)


@pytest.mark.parametrize(
    ("url", "location", "public"),
    [
        ("http://orders:8082", "http://orders:8082/v1/orders/o-1", "https://shop.example/v1/orders/o-1"),
        ("http://orders:8082/", "http://orders:8082/v1/orders/o-1?x=1", "https://shop.example/v1/orders/o-1?x=1"),
        ("http://orders:8082/api", "http://orders:8082/api/v1/orders/o-1", "https://shop.example/v1/orders/o-1"),
        ("http://orders:8082", "http://orders:8082", "https://shop.example/"),
        ("http://orders:8082", "/v1/orders/o-1", "https://shop.example/v1/orders/o-1"),
        # Not under the upstream's URL: left as the upstream wrote it.
        ("http://orders:8082/api", "http://orders:8082/apix/o-1", "http://orders:8082/apix/o-1"),
        ("http://orders:8082", "http://orders:80821/o-1", "http://orders:80821/o-1"),
        ("http://orders:8082", "https://pay.example/return", "https://pay.example/return"),
        # Scheme-relative: another host, not a path.
        ("http://orders:8082", "//evil.example/x", "//evil.example/x"),
    ],
)
def test_an_upstreams_own_location_is_given_under_the_gateways_public_url(url, location, public):
    assert _Upstream(url, 1, "https://shop.example").public_location(location) == public
