import webob

from goshop_gateway.upstream import end_to_end
from goshop_gateway.views import forward_headers


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
    assert dict(end_to_end(headers)) == {
        "Authorization": "Bearer t",
        "Content-Type": "application/json",
        "Idempotency-Key": "k",
    }


def _request(headers, remote="203.0.113.9"):
    request = webob.Request.blank("/v1/orders", headers=headers, remote_addr=remote)
    request.request_id = "rid-1"
    return request


def test_forwarded_headers_carry_the_request_id_and_append_the_client_address():
    forwarded = dict(forward_headers(_request({"X-Request-ID": "client-chosen", "Authorization": "Bearer t"})))
    assert forwarded["X-Request-ID"] == "rid-1"  # the one the gateway logged
    assert forwarded["X-Forwarded-For"] == "203.0.113.9"
    assert forwarded["Authorization"] == "Bearer t"
    chained = dict(forward_headers(_request({"X-Forwarded-For": "198.51.100.1"}, remote="10.0.0.5")))
    assert chained["X-Forwarded-For"] == "198.51.100.1, 10.0.0.5"
