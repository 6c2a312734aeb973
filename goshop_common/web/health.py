"""``/live``, ``/ready`` and ``/v1/db/ping``, as the seed defines them.

``live_view`` is every process's ``/live``: the services' public apps (the
``live`` Cornice service, the gateway's too), their internal apps and the
workers' health apps (``add_live_route``, where there is no Cornice).
"""

from __future__ import annotations

import time

import colander
import sqlalchemy as sa

from goshop_common.web.errors import error_response
from goshop_common.web.openapi import Reply, error
from goshop_common.web.rest import Service
from goshop_common.web.schemas import body, field

live = Service(name="live", path="/live", description="The process is up.")
ready = Service(name="ready", path="/ready", description="Ready to serve: the database answers.")
db_ping = Service(name="db_ping", path="/v1/db/ping", description="Database round-trip time.")

OK = Reply("ok", body("status", field("status", enum=["ok"])))
DB_NOT_READY = error("db not ready")


def ping_database(engine: sa.Engine) -> float:
    """One ``SELECT 1``; returns milliseconds. Raises when the database is down."""
    started = time.perf_counter()
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
    return (time.perf_counter() - started) * 1000


@live.get(responses={200: OK})
def live_view(request):
    return {"status": "ok"}


def add_live_route(config) -> None:
    """``GET /live`` answered by ``live_view`` on a plain Pyramid app."""
    config.add_route("live", "/live")
    config.add_view(live_view, route_name="live", renderer="json", request_method="GET")


@ready.get(responses={200: OK, 503: DB_NOT_READY})
def ready_view(request):
    try:
        ping_database(request.registry.dbengine)
    except Exception:
        return error_response(503, "db not ready")
    return {"status": "ok"}


@db_ping.get(
    responses={
        200: Reply(
            "The round trip, in milliseconds.",
            body("ping", field("status", enum=["ok"]), field("latency_ms", colander.Float(), minimum=0)),
        ),
        503: DB_NOT_READY,
    }
)
def db_ping_view(request):
    try:
        latency_ms = ping_database(request.registry.dbengine)
    except Exception:
        return error_response(503, "db not ready")
    return {"status": "ok", "latency_ms": round(latency_ms, 2)}


def includeme(config) -> None:
    for service in (live, ready, db_ping):
        config.add_cornice_service(service)
