"""A PostgreSQL restart in the middle of a burst of orders: every answer is a
201 or a 503 with Retry-After, and every 201 is a stored order with its event."""

import http.client
import json
import threading
import time
import uuid
from urllib.parse import urlsplit

import sqlalchemy as sa

from goshop_orders import make_app
from tests.support import migrate_all, served, with_settings

CLIENTS = 4


def _post_order(base_url: str, headers: dict) -> tuple[int, dict, dict]:
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
    try:
        body = json.dumps({"amount_cents": 1234}).encode()
        connection.request("POST", "/v1/orders", body=body, headers={**headers, "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def test_a_database_restart_during_a_burst_answers_only_201_or_503(embedded_postgres, service_settings, customer):
    migrate_all(embedded_postgres.url)
    app = make_app(with_settings(service_settings, database_url=embedded_postgres.url, db_connect_timeout=1))
    answers: list[tuple[int, dict, dict]] = []
    stop = threading.Event()

    with served(app, threads=CLIENTS) as base_url:

        def client():
            while not stop.is_set():
                answers.append(_post_order(base_url, customer["headers"]))

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            embedded_postgres.stop("fast")  # sessions terminated, new ones "shutting down"
            time.sleep(0.5)
            embedded_postgres.start()
            restarted = len(answers)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(s == 201 for s, _, _ in answers[restarted:]):
                time.sleep(0.1)
            time.sleep(0.3)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)

    statuses = {status for status, _, _ in answers}
    assert statuses <= {201, 503}, sorted(statuses)
    assert 503 in statuses, "the restart was not seen by any request"
    assert any(status == 201 for status, _, _ in answers[restarted:]), "no order was accepted after the restart"
    for status, headers, body in answers:
        if status == 503:
            assert body == {"error": "service unavailable"}
            assert headers["Retry-After"] == "1"

    created = [uuid.UUID(body["id"]) for status, _, body in answers if status == 201]
    engine = sa.create_engine(embedded_postgres.url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with engine.connect() as connection:
            stored = connection.execute(
                sa.text(
                    "SELECT count(*) FROM orders.orders o JOIN orders.outbox e ON e.key = o.id::text"
                    " WHERE o.id = ANY(:ids)"
                ),
                {"ids": created},
            ).scalar_one()
    finally:
        engine.dispose()
    assert stored == len(created)
