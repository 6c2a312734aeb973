import pytest

from goshop_outboxer.relay import backoff_seconds


@pytest.mark.parametrize(("attempts", "expected"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 32.0)])
def test_backoff_doubles_from_the_base(attempts, expected):
    assert backoff_seconds(attempts, base_ms=500, cap_seconds=60) == expected


def test_backoff_stops_at_the_cap():
    assert backoff_seconds(20, base_ms=500, cap_seconds=60) == 60
    assert backoff_seconds(10_000, base_ms=500, cap_seconds=60) == 60
