"""waitress servers that no slow client can starve (``goshop_common.web.serve``).

waitress as configured by default lets a hundred slow sockets take a
service down (each sending one header line every 5 s, they time out every
other client, internal probes included):

- it stops accepting at ``connection_limit`` (100) open connections; the next
  client waits in the listen backlog until one of them goes;
- it closes a connection only after ``channel_timeout`` seconds without a
  byte, so a client that sends one header line now and then holds its
  connection forever (a slowloris);
- its default loop is ``select()``, which cannot watch a descriptor above
  1023, so the limit cannot simply be raised.

Here a connection must finish its request's headers within ``header_timeout``
seconds of the request's first byte (the first request's: of the connection's
opening, as a client that connects and says nothing is as slow), checked every
second; the loop is ``poll()``; the connection limit is a setting, and the
process's open-files limit is raised to fit it. Holding a connection then costs
a client a new connection every ``header_timeout`` seconds, and it takes more
than ``connection_limit`` of them at once to make anyone wait.

Not covered: an idle keep-alive connection between two requests is still
waitress's ``channel_timeout`` (a client's pool, the gateway's to its
upstreams, must not be cut every few seconds), and a body that trickles in
after complete headers is not timed (its size is bounded by
``max_request_body_size``; a slow upload is not always an attack).
"""

from __future__ import annotations

import logging
import resource
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger("goshop.serve")

# Open files a process needs besides its clients' connections: its database
# pool, the gateway's upstream pools, log files, the loops' wake-up pipes.
SPARE_FILES = 256
# Connections accepted per turn of the loop, at most (see Server.handle_accept).
ACCEPTS_PER_TURN = 64


class _TimedRequest(HTTPRequestParser):
    """waitress's request parser, remembering when the request began."""

    def __init__(self, adj: Adjustments) -> None:
        super().__init__(adj)
        self.started = time.time()


class _Channel(HTTPChannel):
    parser_class = _TimedRequest

    def __init__(
        self,
        server: TcpWSGIServer,
        sock: socket.socket,
        addr: tuple[str, int],
        adj: Adjustments,
        map: dict[int, Any] | None = None,
    ) -> None:
        super().__init__(server, sock, addr, adj, map)
        # waitress makes a request's parser at its first byte; the first one's
        # is made now, so that its clock starts when the connection opens.
        self.request = _TimedRequest(adj)


class Server(TcpWSGIServer):
    """waitress's TCP server, closing connections whose request headers are
    not complete ``header_timeout`` seconds after the request began."""

    channel_class = _Channel

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        self.header_timeout = header_timeout
        super().__init__(*args, **kwargs)

    def handle_accept(self) -> None:
        # waitress accepts one connection per turn of its loop, and a turn
        # asks every open connection whether it has work: when a wave of late
        # connections is closed and they all come back, a new client would wait
        # behind the whole wave, one turn each. Take what is queued at once.
        for _ in range(ACCEPTS_PER_TURN):
            before = len(self._map)
            if before >= self.adj.connection_limit:
                return
            super().handle_accept()
            if len(self._map) == before:
                return  # nothing more queued

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections: channel_timeout
        cutoff = now - self.header_timeout
        for channel in self.active_channels.values():
            request = channel.request
            # A connection with a response in progress is left to finish it.
            late = request is not None and not request.headers_finished and request.started < cutoff
            if late and not channel.requests:
                # How waitress's own maintenance closes a connection.
                channel.will_close = True


class Servers:
    """One app's servers, one per ``listen`` address, on a socket map and a
    task pool of their own, run by one loop (``run``) until ``stop``.

    ``options`` are waitress's (an ini's ``[server:main]``); the loop is
    always ``poll()`` and maintenance runs every second, to keep the deadline
    to the second."""

    def __init__(self, app: WSGIApplication, *, header_timeout: float, connection_limit: int, **options: Any) -> None:
        options = {**options, "connection_limit": connection_limit, "asyncore_use_poll": True, "cleanup_interval": 1}
        self.adj = Adjustments(**options)
        # waitress's socket map: file descriptor -> dispatcher.
        self.sockets: dict[int, Any] = {}
        self.tasks = ThreadedTaskDispatcher()
        self.tasks.set_thread_count(self.adj.threads)
        self.servers = [
            Server(app, self.sockets, dispatcher=self.tasks, adj=self.adj, sockinfo=info, header_timeout=header_timeout)
            for info in self.adj.listen
        ]

    def urls(self) -> list[str]:
        """Where it listens, as ``http://host:port`` (an IPv6 host in brackets)."""
        return [
            f"http://{f'[{s.effective_host}]' if ':' in s.effective_host else s.effective_host}:{s.effective_port}"
            for s in self.servers
        ]

    def run(self) -> None:
        """Serve until ``stop()`` or, in the main thread, a KeyboardInterrupt;
        then end the task threads and close every socket."""
        try:
            wasyncore.loop(timeout=self.adj.asyncore_loop_timeout, map=self.sockets, use_poll=True)
        except KeyboardInterrupt:
            pass
        finally:
            self.tasks.shutdown()
            wasyncore.close_all(self.sockets, ignore_all=True)

    def run_in_background(self, name: str) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=name, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """From another thread: the loop closes its sockets itself (so that
        ``poll()`` never watches one closed under it) and ends."""
        self.servers[0].trigger.pull_trigger(lambda: wasyncore.close_all(self.sockets, ignore_all=True))


def fit_open_files(connections: int, besides: int = 0) -> int:
    """Raise this process's soft limit on open files (up to the hard one) so
    that ``connections`` client connections fit, beside ``besides`` others and
    ``SPARE_FILES``; return how many fit: ``connections``, or fewer (with a
    warning) where the hard limit is too low. Past it, ``accept()`` would fail
    and waitress's loop spin on the listening socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + besides + SPARE_FILES
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return connections
    soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    fitting = soft - besides - SPARE_FILES
    if fitting < connections:
        log.warning(
            "the open files limit (%d) holds %d client connections, not the %d asked for",
            soft,
            max(fitting, 1),
            connections,
        )
    return max(min(fitting, connections), 1)
