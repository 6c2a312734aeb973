"""``/live``, ``/ready`` and ``/v1/db/ping``, as the seed defines them.

``live_view`` is every process's ``/live``: the services' public apps (the
``live`` Cornice service, the gateway's too), their internal apps and the
workers' health apps (``add_live_route``, where there is no Cornice).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import colander
import sqlalchemy as sa

from goshop_common.db.revisions import read_history
from goshop_common.web.errors import error_response
from goshop_common.web.openapi import Reply, error
from goshop_common.web.rest import Service, Tag
from goshop_common.web.schemas import body, field

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.request import Request
    from pyramid.response import Response

HEALTH = Tag("health", "Whether the process is up, and ready to serve; its database's round-trip time.")
live = Service(name="live", path="/live", description="The process is up.", tag=HEALTH)
ready = Service(
    name="ready",
    path="/ready",
    description="Ready to serve: the database answers, and has the service's migrations applied.",
    tag=HEALTH,
)
db_ping = Service(name="db_ping", path="/v1/db/ping", description="Database round-trip time.", tag=HEALTH)

OK = Reply("ok", body("status", field("status", enum=["ok"]), component="Ok"))
DB_NOT_READY = error("db not ready")


def ping_database(engine: sa.Engine) -> float:
    """One ``SELECT 1``; returns milliseconds. Raises when the database is down."""
    started = time.perf_counter()
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
    return (time.perf_counter() - started) * 1000


log = logging.getLogger(__name__)


class SchemaAtHead:
    """Whether a service's schema has the migrations its code needs: its
    version table is at the code's head, or past it (at a revision this code
    does not know, which a release ahead applied: every revision keeps the
    previous release working). Behind, empty or missing (after ``migrate
    reset``), every request would fail; /ready says so instead.

    ``check`` is /ready's one round trip, in place of ``SELECT 1``, and is
    never cached, so a reset shows at the next probe: reading the one-row
    version table is a round trip, as a ping is. The code's side is read
    once, when the app is made, from the revision files
    (goshop_common.db.revisions)."""

    def __init__(self, schema: str, heads: frozenset[str], known: frozenset[str]):
        self.schema = schema
        self.heads = heads
        self.known = known
        # ``schema`` comes from the service's own alembic.ini, never input.
        self._query = sa.text(f'SELECT version_num FROM "{schema}".alembic_version')
        self._lock = threading.Lock()
        self._said: frozenset[str] | None = None

    @classmethod
    def for_service(cls, service: str) -> SchemaAtHead | None:
        """The check for ``goshop_<service>`` if it migrates a schema of its
        own (an alembic.ini beside its code), else None: the ops assistant
        reads others' schemas and keeps none."""
        spec = importlib.util.find_spec(f"goshop_{service}")
        if spec is None or spec.origin is None:
            return None
        ini = Path(spec.origin).with_name("alembic.ini")
        if not ini.exists():
            return None
        history = read_history(ini)
        return cls(history.schema, history.heads, history.known)

    def at_head(self, versions: frozenset[str]) -> bool:
        """Whether a version table holding ``versions`` has what the code needs."""
        if not versions:
            return False
        return versions == self.heads or not versions <= self.known

    def check(self, engine: sa.Engine) -> bool:
        """One round trip; raises when the database is down. A missing
        version table (or schema) is a schema behind, not an error."""
        with engine.connect() as connection:
            try:
                versions = frozenset(connection.execute(self._query).scalars())
            except sa.exc.ProgrammingError as exc:
                if getattr(exc.orig, "pgcode", None) not in ("42P01", "3F000"):  # undefined table, schema
                    raise
                versions = frozenset()
        ready = self.at_head(versions)
        self._say(versions, ready)
        return ready

    def _say(self, versions: frozenset[str], ready: bool) -> None:
        # Once a change, not once a probe: a stuck schema is probed every few seconds.
        with self._lock:
            if versions == self._said:
                return
            self._said = versions
        at = ", ".join(sorted(versions)) or "0"
        if ready:
            log.info("schema at its migrations' head", extra={"schema": self.schema, "version": at})
        else:
            log.warning(
                "schema behind the code: not ready until its migrations are applied",
                extra={"schema": self.schema, "version": at, "expected": ", ".join(sorted(self.heads))},
            )


@live.get(responses={200: OK})
def live_view(request: Request) -> dict[str, str]:
    return {"status": "ok"}


def add_live_route(config: Configurator) -> None:
    """``GET /live`` answered by ``live_view`` on a plain Pyramid app."""
    config.add_route("live", "/live")
    config.add_view(live_view, route_name="live", renderer="json", request_method="GET")


@ready.get(responses={200: OK, 503: DB_NOT_READY})
def ready_view(request: Request) -> dict[str, str] | Response:
    schema = request.registry.goshop_schema_at_head
    try:
        if schema is None:
            ping_database(request.registry.dbengine)
        elif not schema.check(request.registry.dbengine):
            return error_response(503, "db not ready")
    except Exception:
        return error_response(503, "db not ready")
    return {"status": "ok"}


@db_ping.get(
    responses={
        200: Reply(
            "The round trip, in milliseconds.",
            body(
                "ping",
                field("status", enum=["ok"]),
                field("latency_ms", colander.Float(), minimum=0),
                component="DatabasePing",
            ),
        ),
        503: DB_NOT_READY,
    }
)
def db_ping_view(request: Request) -> dict[str, object] | Response:
    try:
        latency_ms = ping_database(request.registry.dbengine)
    except Exception:
        return error_response(503, "db not ready")
    return {"status": "ok", "latency_ms": round(latency_ms, 2)}


def includeme(config: Configurator) -> None:
    config.registry.goshop_schema_at_head = SchemaAtHead.for_service(config.registry.goshop_service)
    for service in (live, ready, db_ping):
        config.add_cornice_service(service)
