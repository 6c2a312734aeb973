"""The console's health strip, from what the shop already exposes: each
process's ``/ready``, the outbox backlog and consumer lag from the
``/metrics`` of the processes that export them, the parked events on the
dead-letter topics, and the orders settled in the last minutes (orders'
read contract).

Every source is asked at once, each with a short timeout: a process that
does not answer is shown as such, never waited for.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.error
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from goshop_common import outgoing
from goshop_orders.read_contract import ORDERS

ASK_TIMEOUT_SECONDS = 1.5
MAX_METRICS_BYTES = 4 * 1024 * 1024
SETTLED_WINDOW = dt.timedelta(minutes=15)
SETTLED_STATUSES = ("paid", "cancelled")


@dataclasses.dataclass(frozen=True)
class Health:
    processes: tuple[tuple[str, str], ...]  # name, "ready" / "not ready (503)" / "unreachable"
    outbox_backlog: dict[str, int] | None  # outbox table -> rows not yet published; None: unknown
    consumer_lag: dict[str, int] | None  # consumer -> records not yet fetched; None: unknown
    parked: int | None  # parked events not replayed; None: the broker did not answer
    settled: dict[str, int]  # status -> orders that reached it in SETTLED_WINDOW
    window_minutes: int = int(SETTLED_WINDOW.total_seconds() // 60)


def readiness(url: str) -> str:
    try:
        outgoing.fetch(url, timeout=ASK_TIMEOUT_SECONDS, max_bytes=65536, direct=True)
    except urllib.error.HTTPError as exc:
        return f"not ready ({exc.code})"
    except (OSError, outgoing.UnexpectedAnswer):
        return "unreachable"
    return "ready"


def series(url: str) -> dict[str, dict[str, int]] | None:
    """The backlog per outbox table and the lag per consumer that ``url``'s
    ``/metrics`` exports; None when it does not answer."""
    try:
        text = outgoing.fetch(url, timeout=ASK_TIMEOUT_SECONDS, max_bytes=MAX_METRICS_BYTES, direct=True).decode()
    except (OSError, outgoing.UnexpectedAnswer):
        return None
    found: dict[str, dict[str, int]] = {"backlog": {}, "lag": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "goshop_outbox_backlog":
                table = sample.labels.get("table", "")
                found["backlog"][table] = found["backlog"].get(table, 0) + int(sample.value)
            elif sample.name == "goshop_consumer_lag":
                consumer = sample.labels.get("consumer", "")
                found["lag"][consumer] = found["lag"].get(consumer, 0) + int(sample.value)
    return found


def settled_query(now: dt.datetime) -> sa.Select:
    """The orders that reached each final status since ``now - SETTLED_WINDOW``,
    counted from the orders' ix_orders_settled_at (a range of it, whatever the
    table's size)."""
    return (
        sa.select(ORDERS.c.status, sa.func.count())
        .where(ORDERS.c.status.in_(SETTLED_STATUSES), ORDERS.c.updated_at >= now - SETTLED_WINDOW)
        .group_by(ORDERS.c.status)
    )


def settled_orders(db, now: dt.datetime) -> dict[str, int]:
    """How many orders reached each final status since ``now - SETTLED_WINDOW``."""
    counts = {status: 0 for status in SETTLED_STATUSES}
    counts.update({status: count for status, count in db.execute(settled_query(now))})
    return counts


def _merge(found: list[dict[str, dict[str, int]] | None], key: str) -> dict[str, int] | None:
    answered = [f[key] for f in found if f is not None]
    if not answered:
        return None
    merged: dict[str, int] = {}
    for each in answered:
        for name, value in each.items():
            merged[name] = merged.get(name, 0) + value
    return merged


def gather(ready_urls, metrics_urls, count_parked, count_settled) -> Health:
    """The strip: ``ready_urls`` and ``metrics_urls`` are (name, url) pairs;
    ``count_parked()`` the parked events not replayed (None if unknown) and
    ``count_settled()`` the settled orders by status, each asked beside the
    others."""
    with ThreadPoolExecutor(max_workers=len(ready_urls) + len(metrics_urls) + 2) as pool:
        states = [pool.submit(readiness, url) for _, url in ready_urls]
        metrics = [pool.submit(series, url) for _, url in metrics_urls]
        parked = pool.submit(count_parked)
        settled = pool.submit(count_settled)
        found = [m.result() for m in metrics]
        return Health(
            processes=tuple((name, state.result()) for (name, _), state in zip(ready_urls, states, strict=True)),
            outbox_backlog=_merge(found, "backlog"),
            consumer_lag=_merge(found, "lag"),
            parked=parked.result(),
            settled=settled.result(),
        )
