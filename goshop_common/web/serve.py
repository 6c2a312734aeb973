"""Serve one service's ``.ini`` with waitress (guarded against slow clients:
``goshop_common.web.slowclients``), optionally on another host or
port and with hupper reloading it when its source changes; and, on the metrics
port, the service's internal app (``/metrics``, ``/live``, detailed health).

``pserve`` cannot move a server to another port from the command line (its
``var=value`` overrides lose to the ini's [DEFAULT]), and ``make run`` and the
end-to-end tests need that; nor can it serve a second app. Everything else is
pserve's behaviour.

The metrics port is ``--metrics-port``, else the ``metrics_port`` setting
(``GOSHOP_METRICS_PORT`` or the ini's ``goshop.metrics_port``); 0 serves no
internal app. It listens on the public server's
host: the port is kept from the internet by what routes to it (no Service port,
no Ingress path, not published by compose), not by the address.

    python -m goshop_common.web.serve goshop_users/development.ini --port 9181 --metrics-port 9191 --reload
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType
from typing import NoReturn

import hupper
from pyramid.paster import get_app, setup_logging
from pyramid.scripts.common import get_config_loader

from goshop_common.observability import logs
from goshop_common.web import slowclients

log = logging.getLogger("goshop.serve")

# Scrapes and probes are few; they must not wait behind public requests, so the
# internal app has threads of its own (and a loop: see serve).
INTERNAL_THREADS = 2
INTERNAL_CONNECTIONS = 100


def serve(ini: str, port: int | None, *, host: str | None = None, metrics_port: int | None = None) -> None:
    """Serve ``ini``'s app until SIGTERM or Ctrl-C, and its internal app on
    ``metrics_port``; ``host`` and ``port`` replace the ini's ``listen``."""
    setup_logging(ini)
    loader = get_config_loader(ini)
    app = get_app(ini)
    settings = app.registry.goshop_settings
    logs.apply(settings)
    logs.write_in_background()
    server = dict(loader.get_settings("server:main"))
    # PasteDeploy's, not a waitress option: waitress refuses unknown ones.
    server.pop("use", None)
    # rsplit: the port is after the last colon, whatever an IPv6 host holds.
    ini_host, ini_port = server.get("listen", "127.0.0.1:0").rsplit(":", 1)
    host = host or ini_host
    server["listen"] = f"{host}:{ini_port if port is None else port}"
    if metrics_port is None:
        # GOSHOP_METRICS_PORT, else the ini's goshop.metrics_port (a setting like any other).
        metrics_port = settings.metrics_port
    # The open-files limit is raised to fit the connections, or the limit lowered to fit it.
    connection_limit = slowclients.fit_open_files(settings.http_connection_limit, besides=INTERNAL_CONNECTIONS)
    public = slowclients.Servers(
        app, header_timeout=settings.http_header_timeout, connection_limit=connection_limit, **server
    )
    # Its own sockets, loop and threads: no flood of the public port can keep
    # probes and scrapes waiting.
    internal = None
    if metrics_port:
        internal = slowclients.Servers(
            app.registry.goshop_internal_app,
            header_timeout=settings.http_header_timeout,
            connection_limit=INTERNAL_CONNECTIONS,
            host=host,
            port=metrics_port,
            threads=INTERNAL_THREADS,
        )
    if settings.log_format != logs.CONSOLE:
        # On make run's console the runner says where each process listens,
        # once it is ready. goshop's logger, not waitress's: outside
        # production the libraries say only their warnings.
        for url in public.urls():
            log.info("Serving on %s", url)
        for url in internal.urls() if internal is not None else ():
            log.info("Serving /metrics and internal health on %s", url)
    # SIGTERM (docker stop, kubectl, make run's Ctrl-C) ends the serve loop the
    # way Ctrl-C does, so the sockets are closed and the exit code is 0.
    signal.signal(signal.SIGTERM, _interrupt)
    internal_loop = internal.run_in_background("internal-http") if internal is not None else None
    try:
        public.run()
    finally:
        if internal is not None and internal_loop is not None:
            internal.stop()
            internal_loop.join(10)


def _interrupt(_signum: int, _frame: FrameType | None) -> NoReturn:
    # Once is enough: a process group stop and hupper's monitor may both send
    # SIGTERM, and a second KeyboardInterrupt would break waitress's shutdown.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m goshop_common.web.serve")
    parser.add_argument("ini")
    parser.add_argument("--host", help="listen on this address instead of the ini's (both servers)")
    parser.add_argument("--port", type=int)
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve the internal app here (default: GOSHOP_METRICS_PORT or the ini's goshop.metrics_port; 0: not)",
    )
    parser.add_argument("--reload", action="store_true", help="restart when a source file changes")
    options = parser.parse_args(argv)
    if options.reload:
        # Returns only in the worker process hupper forks; the monitor stays in start_reloader.
        hupper.start_reloader("goshop_common.web.serve.main", worker_kwargs={"argv": argv})
    serve(options.ini, options.port, host=options.host, metrics_port=options.metrics_port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
