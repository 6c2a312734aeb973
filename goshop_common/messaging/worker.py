"""What every worker process does around its loop: settings, JSON logs,
SIGTERM handling, a small HTTP server for ``/live``, ``/ready`` and
``/metrics``, and periodic tasks beside the loop."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import sqlalchemy as sa
import waitress
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from sqlalchemy.exc import InterfaceError, OperationalError

from goshop_common.observability import logs
from goshop_common.observability.metrics import add_metrics_endpoint
from goshop_common.settings import BaseSettings
from goshop_common.web.errors import error_response
from goshop_common.web.health import add_live_route

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger("goshop.worker")


def on_sigterm(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT ask the loop to finish its batch and return."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        # Closing a client races kafka-python's own I/O thread, which then logs
        # errors (and tracebacks) about the sockets close() shut: noise at every
        # stop that reads like a failure. Our own loggers still say what failed.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def health_app(
    settings: BaseSettings,
    checks: dict[str, Callable[[], bool]],
    *,
    service: str | None = None,
    engine: sa.Engine | None = None,
    stalled: Callable[[], str | None] | None = None,
) -> WSGIApplication:
    """``/ready`` 200 when every check passes, else 503 naming the ones that
    failed. ``/live`` 200, unless ``stalled`` says why the process is stuck
    while every check passes (a worker waiting for its database or broker is
    not stuck: restarting it brings neither back): then 503 with the reason,
    for a supervisor to restart it. With ``service``, also ``/metrics``: the
    process's metrics, its requests labelled ``service`` and ``engine``'s
    pool usage."""

    def ready(request: Request) -> dict[str, str] | Response:
        failed = sorted(name for name, check in checks.items() if not _safe(check))
        if failed:
            return error_response(503, f"not ready: {', '.join(failed)}")
        return {"status": "ok"}

    def live(request: Request) -> dict[str, str] | Response:
        reason = stalled() if stalled is not None else None
        if reason is not None and all(_safe(check) for check in checks.values()):
            return error_response(503, f"not live: {reason}")
        return {"status": "ok"}

    with Configurator() as config:
        config.registry.goshop_settings = settings
        config.include("goshop_common.web.errors")
        config.include("goshop_common.web.caching")
        config.include("goshop_common.web.requestlog")
        if stalled is None:
            add_live_route(config)
        else:
            config.add_route("live", "/live")
            config.add_view(live, route_name="live", renderer="json", request_method="GET")
        config.add_route("ready", "/ready")
        config.add_view(ready, route_name="ready", renderer="json", request_method="GET")
        if service is not None:
            config.registry.goshop_service = service
            if engine is not None:
                config.registry.dbengine = engine
            # A worker's health port is internal (no Service, no Ingress), so
            # its metrics live there.
            config.include("goshop_common.observability.metrics")
            config.include(add_metrics_endpoint)
    app: WSGIApplication = config.make_wsgi_app()
    return app


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:
        return False


def serve_in_background(app: WSGIApplication, host: str, port: int) -> threading.Thread:
    server = waitress.create_server(app, host=host, port=port, threads=2)
    thread = threading.Thread(target=server.run, name="health-http", daemon=True)
    thread.start()
    log.info("health endpoints up", extra={"listen": f"{host}:{port}"})
    return thread


def configure_logging(settings: BaseSettings) -> None:
    if settings.production:
        logs.configure(settings.log_level, logs.JSON)
    else:
        logs.configure(settings.log_level, settings.log_format, quiet=True)
    logs.write_in_background()


class Periodic:
    """``task()`` now and then every ``interval`` seconds, in a thread of its
    own, until ``stop``. A failure is logged and the task runs again at its
    next turn: a database that is away is a warning, anything else an error
    with its traceback. Nothing is retried sooner: the task is a sweep that
    picks up whatever the failed run left."""

    def __init__(self, name: str, interval: float, task: Callable[[], object]):
        self.name = name
        self.interval = interval
        self.task = task
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Let a run in progress finish (its transaction commits or rolls back), then end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.task()
            except (OperationalError, InterfaceError) as exc:
                log.warning(
                    "periodic task failed: database unavailable",
                    extra={"task": self.name, "error": exc.__class__.__name__},
                )
            except Exception:
                log.exception("periodic task failed", extra={"task": self.name})
            self._stop.wait(self.interval)
