"""Waiting for a PostgreSQL notification (LISTEN/NOTIFY): a doorbell, never a
carrier of data. A missed ring costs only time: whoever waits also wakes at
its own timeout and looks for itself."""

from __future__ import annotations

import logging
import select
import time

import psycopg2
from sqlalchemy.engine import make_url

log = logging.getLogger("goshop.listen")


class Listener:
    """A dedicated autocommit connection LISTENing on ``channel``; reconnects
    by itself after a database restart."""

    def __init__(self, database_url: str, channel: str, application_name: str):
        self.url = make_url(database_url)
        self.channel = channel
        self.application_name = application_name
        self.connection: psycopg2.extensions.connection | None = None

    def _connect(self) -> psycopg2.extensions.connection:
        url = self.url
        self.connection = connection = psycopg2.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            connect_timeout=3,
            application_name=self.application_name,
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {self.channel}")
        return connection

    def wait(self, timeout: float) -> frozenset[str]:
        """Sleep up to ``timeout`` seconds; the payloads of the notifications
        that came meanwhile, empty if none did (or the connection is down:
        then it sleeps at most a second, and the caller looks for itself)."""
        try:
            connection = self.connection
            if connection is None or connection.closed:
                connection = self._connect()
            if not connection.notifies and select.select([connection], [], [], timeout) == ([], [], []):
                return frozenset()
            connection.poll()
            payloads = frozenset(notify.payload for notify in connection.notifies)
            connection.notifies.clear()
            return payloads
        except (psycopg2.Error, OSError) as exc:
            log.warning(
                "listen connection lost; polling until it is back",
                extra={"channel": self.channel, "error": exc.__class__.__name__},
            )
            self.close()
            time.sleep(min(timeout, 1.0))
            return frozenset()

    def close(self) -> None:
        if self.connection is not None and not self.connection.closed:
            self.connection.close()
        self.connection = None
