"""The payment timeout: an order still ``new`` after
``GOSHOP_ORDER_PAYMENT_TIMEOUT_SECONDS`` is cancelled with reason
``payment_timeout``, and its ``order.cancelled`` event queued in the same
transaction (payments refunds a payment it took meanwhile).

Safe with replicas: each batch locks the orders it cancels with ``FOR UPDATE
SKIP LOCKED``, so two sweepers (or a sweeper and the orders consumer settling
the same order) never both move one; and only a ``new`` order moves, so a
sweep repeated after a crash cancels nothing twice. The sweep walks a partial
index of ``new`` orders by age: a shop whose orders all settle reads none.

Traced, each cancellation starts a trace of its own (``payment timeout``),
linked to the checkout's (the trace its ``order.created`` was created in):
no request caused it, a quarter of an hour may separate the two, and one
sweep cancels orders of many checkouts. The ``order.cancelled`` event, and
the refund payments answers it with, are in the cancellation's trace.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable

import sqlalchemy as sa
from opentelemetry import trace

from goshop_common.messaging.outbox import add_event
from goshop_common.observability import tracing
from goshop_common.observability.metrics import ORDERS_TIMED_OUT
from goshop_domain.events import ORDER_CANCELLED, ORDER_CREATED
from goshop_orders.models import CANCELLED, NEW, OUTBOX, Order

log = logging.getLogger("goshop.orders.sweeper")

PAYMENT_TIMEOUT = "payment_timeout"
BATCH_SIZE = 100

_ORDERS = Order.__table__
# A locking CTE is run once, whatever plan the update gets: as a plain IN
# (subquery), a plan that rescans it could lock a second batch.
_OVERDUE = (
    sa.select(_ORDERS.c.id)
    .where(_ORDERS.c.status == NEW, _ORDERS.c.created_at < sa.bindparam("cutoff"))
    .order_by(_ORDERS.c.created_at)
    .limit(sa.bindparam("batch_size"))
    .with_for_update(skip_locked=True)
    .cte("overdue")
)
# The outer status test holds even for a row settled between the CTE's
# snapshot and its lock: PostgreSQL re-reads a locked row before updating it.
_CANCEL_OVERDUE = (
    sa.update(_ORDERS)
    .where(_ORDERS.c.id.in_(sa.select(_OVERDUE.c.id)), _ORDERS.c.status == NEW)
    .values(status=CANCELLED, reason=PAYMENT_TIMEOUT, updated_at=sa.bindparam("now"))
    .returning(_ORDERS.c.id, _ORDERS.c.user_id, _ORDERS.c.amount_cents, _ORDERS.c.currency)
)


# Where each cancelled order's checkout trace is: its order.created row. Read
# only when tracing, and only for a batch that cancelled something.
_CHECKOUT_TRACES = sa.select(OUTBOX.c.key, OUTBOX.c.traceparent).where(
    OUTBOX.c.event_type == ORDER_CREATED.name, OUTBOX.c.key.in_(sa.bindparam("keys", expanding=True))
)


class PaymentTimeouts:
    """Cancels overdue orders, a batch per transaction."""

    def __init__(
        self,
        engine: sa.Engine,
        timeout_seconds: float,
        clock: Callable[[], dt.datetime],
        batch_size: int = BATCH_SIZE,
    ):
        self.engine = engine
        self.timeout = dt.timedelta(seconds=timeout_seconds)
        self.clock = clock
        self.batch_size = batch_size

    def sweep(self) -> int:
        """Cancel every order overdue now; how many this sweep cancelled."""
        cancelled = 0
        while True:
            batch = self.sweep_batch()
            cancelled += batch
            if batch < self.batch_size:
                return cancelled

    def sweep_batch(self) -> int:
        """One transaction: up to ``batch_size`` overdue orders cancelled, each
        with its event."""
        now = self.clock()
        values = {"cutoff": now - self.timeout, "batch_size": self.batch_size, "now": now}
        started = tracing.now_ns()
        with self.engine.begin() as db:
            rows = db.execute(_CANCEL_OVERDUE, values).all()
            checkouts = self._checkout_traces(db, rows)
            traces = {}
            for row in rows:
                with self._cancellation_span(row.id, checkouts.get(str(row.id)), started) as span:
                    traces[row.id] = {} if span is None else tracing.ids_of(span)
                    add_event(
                        db,
                        OUTBOX,
                        ORDER_CANCELLED,
                        occurred_at=now,
                        order_id=row.id,
                        user_id=row.user_id,
                        amount_cents=row.amount_cents,
                        currency=row.currency,
                        status=CANCELLED,
                        reason=PAYMENT_TIMEOUT,
                    )
        # After the commit, outside the spans: each line names its cancellation's trace.
        for row in rows:
            fields = {"order_id": str(row.id), "reason": PAYMENT_TIMEOUT, **traces[row.id]}
            log.warning("order cancelled: no payment in time", extra=fields)
        ORDERS_TIMED_OUT.inc(len(rows))
        return len(rows)

    @staticmethod
    def _checkout_traces(db, rows) -> dict[str, trace.SpanContext]:
        if not rows or not tracing.enabled():
            return {}
        found = db.execute(_CHECKOUT_TRACES, {"keys": [str(row.id) for row in rows]})
        contexts = {key: tracing.span_context_from(traceparent) for key, traceparent in found}
        return {key: context for key, context in contexts.items() if context is not None}

    @staticmethod
    def _cancellation_span(order_id, checkout: trace.SpanContext | None, started: int):
        """A new trace for one cancellation, linked to its checkout's."""
        if not tracing.enabled():
            return contextlib.nullcontext()
        return tracing.tracer().start_as_current_span(
            "payment timeout",
            context=tracing.context_from(None),
            links=[trace.Link(checkout)] if checkout is not None else None,
            start_time=started,
            attributes={"goshop.order.id": str(order_id), "goshop.order.reason": PAYMENT_TIMEOUT},
        )
