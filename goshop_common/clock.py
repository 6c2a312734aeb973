"""The current time, and how goshop writes times in JSON (RFC 3339, UTC, ``Z``)."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(moment: dt.datetime, milliseconds: bool = True) -> str:
    """``2025-09-19T11:47:11.123Z``; whole seconds where the seed shows them."""
    return (
        moment.astimezone(dt.UTC)
        .isoformat(timespec="milliseconds" if milliseconds else "seconds")
        .replace("+00:00", "Z")
    )
