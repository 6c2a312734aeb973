"""The tests' raw upstream: a TCP server that answers as each test scripts it, and reads requests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


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


class RawUpstream:
    """A TCP server on 127.0.0.1 that hands each connection to ``behaviour``
    and counts the connections it accepted."""

    def __init__(self, behaviour: Callable[[socket.socket], None]):
        self.behaviour = behaviour
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self._handle(connection)

    def _handle(self, connection: socket.socket) -> None:
        # Each connection in a thread of its own; a subclass may decide more here, at accept time.
        threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            self.behaviour(connection)

    def close(self) -> None:
        # shutdown() wakes the accept() of the other thread; close() alone does not.
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)
        assert not self.thread.is_alive()
