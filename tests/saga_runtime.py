"""The saga's workers run as threads inside the test process: the outboxer,
the payments consumer and the orders consumer, on a real broker and database."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid

import sqlalchemy as sa

from goshop_common.db.session import make_engine
from goshop_common.messaging.kafka import make_producer
from goshop_devtools.settings import AllSettings
from goshop_devtools.waiting import poll_until
from goshop_orders import consumer as orders_consumer
from goshop_outboxer.__main__ import build as build_outboxer
from goshop_payments import consumer as payments_consumer

FINAL = ("paid", "cancelled")


def saga_settings(settings: AllSettings, bootstrap: str) -> AllSettings:
    # Quick retries and a short safety-net poll, so fault tests settle fast.
    # Groups of their own: Tansu can leave a group stuck mid-rebalance when a
    # member leaves during its join, and that must not spill into other tests.
    suffix = uuid.uuid4().hex[:8]
    return dataclasses.replace(
        settings,
        kafka_bootstrap=bootstrap,
        orders_consumer_group=f"test-orders-{suffix}",
        payments_consumer_group=f"test-payments-{suffix}",
        outbox_poll_seconds=1,
        outbox_backoff_base_ms=100,
        outbox_backoff_cap_seconds=2,
    )


class Worker:
    def __init__(self, name: str, target, stop):
        self.name = name
        self.stop = stop
        self.errors: list[BaseException] = []

        def run():
            try:
                target()
            except BaseException as exc:  # surfaced by SagaRuntime.stop
                self.errors.append(exc)

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()


class SagaRuntime:
    def __init__(self, settings: AllSettings):
        self.settings = settings
        self.engine = make_engine(settings, pool_size=4, max_overflow=4)
        self.workers: list[Worker] = []
        self.outboxers = []
        self.payments = []
        self.orders = []
        self.sweepers = []
        self._producers = []

    def add_outboxer(self):
        producer = make_producer(self.settings.kafka_bootstrap)
        self._producers.append(producer)
        outboxer = build_outboxer(self.settings, self.engine, producer)
        self.outboxers.append(outboxer)
        self.workers.append(Worker("outboxer", outboxer.run, outboxer.stop))
        return outboxer

    def add_payments_consumer(self):
        consumer = payments_consumer.build(self.settings)
        self.payments.append(consumer)
        self.workers.append(Worker("payments", consumer.run, consumer.stop))
        return consumer

    def add_orders_consumer(self):
        consumer = orders_consumer.build(self.settings)
        self.orders.append(consumer)
        self.workers.append(Worker("orders", consumer.run, consumer.stop))
        return consumer

    def add_sweeper(self):
        """The payment-timeout sweep, as the orders consumer process runs it
        beside its loop (goshop_orders.consumer.payment_timeouts)."""
        [sweeper] = orders_consumer.payment_timeouts(self.settings, self.orders[0])
        self.sweepers.append(sweeper.start())
        return sweeper

    def start(self) -> SagaRuntime:
        self.add_outboxer()
        self.add_payments_consumer()
        self.add_orders_consumer()
        return self

    def stop(self) -> None:
        for sweeper in self.sweepers:
            sweeper.stop()
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            worker.thread.join(30)
        for producer in self._producers:
            producer.close(timeout=5)
        self.engine.dispose()
        errors = [error for worker in self.workers for error in worker.errors]
        assert not errors, errors
        stuck = [worker.name for worker in self.workers if worker.thread.is_alive()]
        assert not stuck, f"workers did not stop: {stuck}"

    # -- waiting for the saga ------------------------------------------------

    def statuses(self, order_ids) -> dict[str, str]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT id::text, status FROM orders.orders WHERE id = ANY(:ids)"),
                {"ids": [uuid.UUID(str(i)) for i in order_ids]},
            )
            return dict(rows.all())

    def wait_settled(self, order_ids, timeout: float = 60) -> dict[str, str]:
        order_ids = [str(i) for i in order_ids]
        deadline = time.monotonic() + timeout
        while True:
            crashed = [(worker.name, worker.errors) for worker in self.workers if worker.errors]
            assert not crashed, f"a saga worker died: {crashed}"
            statuses = self.statuses(order_ids)
            if len(statuses) == len(order_ids) and all(s in FINAL for s in statuses.values()):
                return statuses
            if time.monotonic() > deadline:
                pending = {i: statuses.get(i) for i in order_ids if statuses.get(i) not in FINAL}
                raise AssertionError(f"{len(pending)} orders not settled after {timeout}s: {list(pending.items())[:5]}")
            time.sleep(0.1)


def wait_until(predicate, timeout: float = 30, message: str = "condition"):
    value = poll_until(predicate, timeout)
    if not value:
        raise AssertionError(f"{message} not reached after {timeout}s")
    return value
