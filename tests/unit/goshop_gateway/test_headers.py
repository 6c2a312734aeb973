from goshop_gateway.upstream import end_to_end


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
