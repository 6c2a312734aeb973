"""What the tests' raw upstream servers need of HTTP: reading one request."""

from __future__ import annotations

import socket


def read_request(connection: socket.socket) -> bool:
    """Reads one request's head and its Content-Length body; False at end of stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True
