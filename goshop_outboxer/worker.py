"""The outboxer's loop: relay every outbox until nothing is due, then sleep
until Postgres says a row was committed (LISTEN/NOTIFY) or the slow poll —
the safety net for a missed notification and for rows in backoff — comes round.
"""

from __future__ import annotations

import logging
import select
import threading
import time

import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from goshop_common.messaging.outbox import NOTIFY_CHANNEL
from goshop_outboxer.relay import Relay

log = logging.getLogger("goshop.outboxer")


class Listener:
    """A dedicated autocommit connection LISTENing on the outbox channel;
    reconnects by itself after a database restart."""

    def __init__(self, database_url: str):
        self.url = make_url(database_url)
        self.connection = None

    def _connect(self) -> None:
        url = self.url
        self.connection = psycopg2.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            connect_timeout=3,
            application_name="goshop-outboxer-listen",
        )
        self.connection.autocommit = True
        with self.connection.cursor() as cursor:
            cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def wait(self, timeout: float) -> frozenset[str]:
        """Sleep up to ``timeout`` seconds; the schemas whose outbox had a row
        committed meanwhile (the trigger's payload), empty if none did."""
        try:
            if self.connection is None or self.connection.closed:
                self._connect()
            if select.select([self.connection], [], [], timeout) == ([], [], []):
                return frozenset()
            self.connection.poll()
            schemas = frozenset(notify.payload for notify in self.connection.notifies)
            self.connection.notifies.clear()
            return schemas
        except (psycopg2.Error, OSError) as exc:
            log.warning("listen connection lost; polling until it is back", extra={"error": exc.__class__.__name__})
            self.close()
            time.sleep(min(timeout, 1.0))
            return frozenset()

    def close(self) -> None:
        if self.connection is not None and not self.connection.closed:
            self.connection.close()
        self.connection = None


class Outboxer:
    """Runs the relays of every outbox until stopped.

    A notification names the schema whose outbox had a commit, and wakes only
    that schema's relay; the slow poll (and any full batch) goes over all of
    them, for rows in backoff and for a notification that was missed."""

    def __init__(self, relays: list[Relay], listener: Listener | None, poll_seconds: float):
        self.relays = relays
        self.listener = listener
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def pass_once(self, schemas: frozenset[str] | None = None) -> bool:
        """Relay a batch from each table (of ``schemas`` only, when given);
        True when any table had a full batch (more may be waiting, so go again
        without sleeping)."""
        more = False
        for relay in self.relays:
            if schemas is not None and relay.table.schema not in schemas:
                continue
            try:
                claimed = relay.relay_once()
            except sa.exc.OperationalError as exc:
                log.warning("database unavailable", extra={"table": relay.name, "error": exc.__class__.__name__})
                self._stop.wait(1.0)
                continue
            more = more or claimed >= relay.batch_size
        return more

    def _sleep_for(self) -> float:
        # A row in backoff is due before the slow poll: wake for it. Only a
        # relay that may have one asks the database when: a new row wakes the
        # outboxer by NOTIFY, and another replica's failed row is that
        # replica's to wake for (or the slow poll's, should it die). That
        # spared two queries after every pass of a healthy outboxer.
        timeout = self.poll_seconds
        for relay in self.relays:
            if not relay.may_have_backoff:
                continue
            try:
                due = relay.next_due_in()
            except sa.exc.OperationalError:
                return 1.0
            if due is not None:
                timeout = min(timeout, max(due, 0.05))
        return timeout

    def run(self) -> None:
        woken: frozenset[str] | None = None  # None: every outbox is due a look
        try:
            while not self._stop.is_set():
                more = self.pass_once(woken)
                woken = None
                if more:
                    continue
                timeout = self._sleep_for()
                if self.listener is None:
                    self._stop.wait(timeout)
                else:
                    # Short slices so a stop request is noticed quickly.
                    deadline = time.monotonic() + timeout
                    while not self._stop.is_set() and time.monotonic() < deadline:
                        notified = self.listener.wait(min(0.5, deadline - time.monotonic()))
                        if notified:
                            woken = notified
                            break
        finally:
            if self.listener is not None:
                self.listener.close()
