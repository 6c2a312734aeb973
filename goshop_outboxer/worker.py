"""The outboxer's loop: relay every outbox until nothing is due, then sleep
until Postgres says a row was committed (LISTEN/NOTIFY) or the slow poll —
the safety net for a missed notification and for rows in backoff — comes round.
"""

from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa

from goshop_common.db.listen import Listener
from goshop_common.messaging.outbox import NOTIFY_CHANNEL
from goshop_outboxer.relay import Relay

log = logging.getLogger("goshop.outboxer")


def outbox_listener(database_url: str) -> Listener:
    """The outboxer's doorbell: the outbox trigger's NOTIFY, naming the schema."""
    return Listener(database_url, NOTIFY_CHANNEL, "goshop-outboxer-listen")


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
