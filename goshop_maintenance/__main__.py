"""``python -m goshop_maintenance``: delete expired rows every
``GOSHOP_RETENTION_INTERVAL_SECONDS`` (health and metrics on :8088, ``--port``
to move them); ``--once`` runs one pass and exits, 0 when every rule went to
the end, 1 otherwise (a CronJob retries it)."""

from __future__ import annotations

import argparse
import sys

import sqlalchemy as sa

from goshop_common.db.session import make_engine
from goshop_common.messaging.worker import configure_logging, health_app, on_sigterm, serve_in_background
from goshop_common.observability import tracing
from goshop_common.settings import load_settings
from goshop_common.web.health import ping_database
from goshop_maintenance.rules import every_rule
from goshop_maintenance.settings import MaintenanceSettings
from goshop_maintenance.worker import Maintenance


def build(settings: MaintenanceSettings, engine: sa.Engine, **options) -> Maintenance:
    """The worker for every service's rules; ``options`` go to Maintenance (a clock)."""
    return Maintenance(
        engine,
        every_rule(settings),
        batch_size=settings.retention_batch_size,
        interval=settings.retention_interval,
        **options,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goshop_maintenance")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088, help="health and metrics endpoints")
    parser.add_argument("--once", action="store_true", help="one pass over every rule, then exit")
    options = parser.parse_args(argv)
    settings = load_settings(MaintenanceSettings)
    configure_logging(settings)
    tracing.configure("maintenance")
    # One connection deletes, one answers /ready.
    engine = make_engine(settings, pool_size=2, max_overflow=0)
    maintenance = build(settings, engine)
    on_sigterm(maintenance.stop)
    try:
        if options.once:
            return 0 if maintenance.pass_once() else 1
        checks = {"database": lambda: ping_database(engine) >= 0}
        serve_in_background(
            health_app(settings, checks, service="maintenance", engine=engine), options.host, options.port
        )
        maintenance.run()
        return 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
