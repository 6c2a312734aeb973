"""``python -m goshop_outboxer``: relay every committed outbox row to Kafka
(health and metrics on :8084, ``--port`` to move them)."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

import sqlalchemy as sa
from kafka.errors import KafkaError

from goshop_common.db.session import make_engine
from goshop_common.messaging.kafka import broker_reachable, make_producer
from goshop_common.messaging.outbox import outbox_table
from goshop_common.messaging.worker import configure_logging, health_app, on_sigterm, serve_in_background
from goshop_common.observability import tracing
from goshop_common.observability.metrics import OUTBOXES
from goshop_common.settings import load_settings
from goshop_common.web.health import ping_database
from goshop_outboxer.relay import Relay
from goshop_outboxer.settings import OutboxerSettings
from goshop_outboxer.worker import Outboxer, outbox_listener

log = logging.getLogger("goshop.outboxer")

# The relay's claim finds the pending rows through the outbox's partial
# indexes, where every published row leaves an entry behind until VACUUM
# removes it. A bitmap scan visits each of those rows in the heap, pass after
# pass, so a claim slows down as they pile up; a plain index scan marks the
# entries it finds dead, so the next pass skips them (docs/adr/0008).
# The planner prefers the bitmap scan for the few rows it expects, so the
# outboxer's connections are told not to use one (their only other
# statements are the backlog gauges' and the readiness ping).
RELAY_SERVER_SETTINGS = {"enable_bitmapscan": "off"}


def outbox_tables(schemas) -> list[sa.Table]:
    """The outbox table of each schema: the outboxer knows the outbox's shape
    (goshop_common.messaging.outbox), never a service's models."""
    return [outbox_table(sa.MetaData(schema=schema)) for schema in schemas]


def build(settings: OutboxerSettings, engine: sa.Engine, producer, tables=None, listen: bool = True) -> Outboxer:
    """An Outboxer relaying ``tables`` (by default the outboxes of
    ``settings.outbox_schemas``) through ``producer``."""
    if tables is None:
        tables = outbox_tables(settings.outbox_schemas)
    relays = [
        Relay(
            engine,
            table,
            producer,
            batch_size=settings.outbox_batch_size,
            backoff_base_ms=settings.outbox_backoff_base_ms,
            backoff_cap_seconds=settings.outbox_backoff_cap_seconds,
        )
        for table in tables
    ]
    listener = outbox_listener(settings.database_url) if listen else None
    return Outboxer(relays, listener, settings.outbox_poll_seconds)


def _producer_when_reachable(bootstrap: str, stopping: threading.Event):
    """The producer connects in its constructor: a broker that is down at boot
    must delay the outboxer, not crash it (rows wait in the outbox meanwhile).
    None when asked to stop first."""
    delay = 1.0
    while not stopping.is_set():
        try:
            return make_producer(bootstrap)
        except KafkaError as exc:
            log.warning("broker unreachable; retrying", extra={"bootstrap": bootstrap, "error": exc.__class__.__name__})
            stopping.wait(delay)
            delay = min(delay * 2, 30.0)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goshop_outboxer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8084, help="health and metrics endpoints")
    options = parser.parse_args(argv)
    settings = load_settings(OutboxerSettings)
    configure_logging(settings)
    # Before the engine and the producer: both are instrumented as they are made.
    tracing.configure("outboxer")
    engine = make_engine(settings, server_settings=RELAY_SERVER_SETTINGS, pool_size=2, max_overflow=1)
    checks = {
        "database": lambda: ping_database(engine) >= 0,
        "broker": lambda: broker_reachable(settings.kafka_bootstrap),
    }
    # Watched from the start: a backlog growing while the broker is away is
    # what the gauges are for.
    for table in outbox_tables(settings.outbox_schemas):
        OUTBOXES.watch(engine, table)
    # Health first: while the broker is away at boot, /ready says so.
    app = health_app(settings, checks, service="outboxer", engine=engine)
    serve_in_background(app, options.host, options.port)
    stopping = threading.Event()
    on_sigterm(stopping.set)
    producer = _producer_when_reachable(settings.kafka_bootstrap, stopping)
    if producer is None:
        return 0
    outboxer = build(settings, engine, producer)
    on_sigterm(outboxer.stop)
    try:
        if not stopping.is_set():
            outboxer.run()
    finally:
        producer.close(timeout=5)
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
