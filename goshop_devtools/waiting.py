"""Waiting for a condition, for the dev tooling, the benchmarks and the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(predicate: Callable[[], T], timeout: float, interval: float = 0.1) -> T | None:
    """``predicate()``'s first truthy value, asked every ``interval`` seconds
    for up to ``timeout``; None if it never was. The caller raises its own error."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
