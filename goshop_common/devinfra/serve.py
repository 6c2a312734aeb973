"""Serve one service's ``.ini`` with waitress, optionally on another port and
with hupper reloading it when its source changes.

``pserve`` cannot move a server to another port from the command line (its
``var=value`` overrides lose to the ini's [DEFAULT]), and ``make run`` and the
end-to-end tests need that. Everything else is pserve's behaviour.

    python -m goshop_common.devinfra.serve goshop_users/development.ini --port 9081 --reload
"""

from __future__ import annotations

import argparse
import signal
import sys

import hupper
import waitress
from pyramid.paster import get_app, setup_logging
from pyramid.scripts.common import get_config_loader


def serve(ini: str, port: int | None) -> None:
    setup_logging(ini)
    app = get_app(ini)
    server = dict(get_config_loader(ini).get_settings("server:main"))
    server.pop("use", None)
    if port is not None:
        host = server.get("listen", "127.0.0.1:0").rsplit(":", 1)[0]
        server["listen"] = f"{host}:{port}"
    # SIGTERM (docker stop, kubectl, make run's Ctrl-C) ends the serve loop the
    # way Ctrl-C does, so waitress closes its sockets and the exit code is 0.
    signal.signal(signal.SIGTERM, _interrupt)
    waitress.serve(app, **server)


def _interrupt(_signum, _frame):
    # Once is enough: a process group stop and hupper's monitor may both send
    # SIGTERM, and a second KeyboardInterrupt would break waitress's shutdown.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m goshop_common.devinfra.serve")
    parser.add_argument("ini")
    parser.add_argument("--port", type=int)
    parser.add_argument("--reload", action="store_true", help="restart when a source file changes")
    options = parser.parse_args(argv)
    if options.reload:
        # Returns only in the worker process hupper forks; the monitor stays in start_reloader.
        hupper.start_reloader("goshop_common.devinfra.serve.main", worker_kwargs={"argv": argv})
    serve(options.ini, options.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
