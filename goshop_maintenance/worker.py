"""The maintenance loop: a pass over every retention rule, then a sleep.

A rule whose batch fails (a lock it would wait for, a statement timeout) is
left for the next pass and the others still run. A database that is away
ends the pass at once — every rule would fail the same way — and the worker
tries again after a back-off, saying so once rather than at every retry.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from goshop_common.clock import utcnow
from goshop_common.db.retention import Rule, delete_expired
from goshop_common.observability import tracing
from goshop_common.observability.metrics import RETENTION_DELETED, RETENTION_LAST_SUCCESS

log = logging.getLogger("goshop.maintenance")

# Retries while the database is away: 1 s doubling up to this.
RETRY_CAP_SECONDS = 30.0


def _database_away(exc: sa.exc.DBAPIError) -> bool:
    """The server is unreachable or went away, as opposed to refusing one
    statement (a lock timeout, 55P03; a statement timeout, 57014)."""
    code = getattr(exc.orig, "pgcode", None)
    return exc.connection_invalidated or code is None or code.startswith(("08", "57P"))


class Maintenance:
    """Runs ``rules`` every ``interval`` seconds until stopped, deleting
    ``batch_size`` rows per transaction. ``clock`` says what now is (the
    tests move it instead of waiting)."""

    def __init__(
        self,
        engine: sa.Engine,
        rules: list[Rule],
        *,
        batch_size: int,
        interval: float,
        clock: Callable[[], dt.datetime] = utcnow,
    ):
        self.engine = engine
        self.rules = rules
        self.batch_size = batch_size
        self.interval = interval
        self.clock = clock
        self._stop = threading.Event()
        self._away = False
        # Every table's series from the start: 0 deleted reads as 0, not as missing.
        self._deleted = {rule.name: RETENTION_DELETED.labels(rule.name) for rule in rules}

    def stop(self) -> None:
        self._stop.set()

    def pass_once(self) -> bool:
        """Delete what has expired now in every table; True when every rule
        went to the end (False: stopped, or something failed and was logged)."""
        now = self.clock()
        complete = True
        for rule in self.rules:
            if self._stop.is_set():
                return False
            started = time.perf_counter()
            try:
                # A trace per table and pass, its batches' DELETEs inside: where
                # a slow pass spent its time (nothing without an OTLP endpoint).
                with tracing.tracer().start_as_current_span(
                    f"retention {rule.name}", attributes={"db.collection.name": rule.name}
                ) as span:
                    deleted = delete_expired(
                        self.engine,
                        rule,
                        now,
                        self.batch_size,
                        on_batch=self._deleted[rule.name].inc,
                        stopping=self._stop.is_set,
                    )
                    span.set_attribute("goshop.retention.deleted", deleted)
            except sa.exc.DBAPIError as exc:
                if _database_away(exc):
                    if not self._away:
                        log.warning(
                            "database unavailable; the pass stops here", extra={"error": exc.orig.__class__.__name__}
                        )
                    self._away = True
                    return False
                # One table's trouble (a migration holding its lock, say):
                # the next pass tries it again.
                log.warning(
                    "retention batch failed; the next pass retries",
                    extra={"table": rule.name, "error": exc.orig.__class__.__name__},
                )
                complete = False
                continue
            if self._away:
                log.info("database is back")
                self._away = False
            if self._stop.is_set():
                return False
            RETENTION_LAST_SUCCESS.labels(rule.name).set(time.time())
            if deleted:
                log.info(
                    "expired rows deleted",
                    extra={
                        "table": rule.name,
                        "deleted": deleted,
                        "horizon_seconds": int(rule.horizon.total_seconds()),
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
        return complete

    def run(self) -> None:
        retry = 1.0
        while not self._stop.is_set():
            if self.pass_once():
                retry = 1.0
                self._stop.wait(self.interval)
            else:
                self._stop.wait(min(retry, self.interval))
                retry = min(retry * 2, RETRY_CAP_SECONDS)
