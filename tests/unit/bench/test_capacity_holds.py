"""bench_capacity's holds: after a failed hold, half the rate, then a bisection
between the highest rate held and the lowest failed, to the search's precision."""

from __future__ import annotations

from tests.support import bench_module

capacity = bench_module("bench_capacity")
next_hold = capacity.next_hold


def test_a_first_hold_that_passes_ends_the_holds():
    assert next_hold(held=278.4, failed=None, precision=0.1) is None


def test_a_failed_hold_with_none_held_halves_the_rate():
    assert next_hold(held=None, failed=168.8, precision=0.1) == 84.4


def test_holds_bisect_between_the_highest_held_and_the_lowest_failed():
    assert next_hold(held=42.2, failed=84.4, precision=0.1) == 63.3


def test_holds_stop_once_the_failure_is_within_the_precision_of_the_rate_held():
    assert next_hold(held=73.9, failed=79.1, precision=0.1) is None
    assert next_hold(held=73.9, failed=84.4, precision=0.1) == 79.2


def test_the_two_replica_limit_is_found_from_a_search_that_overshot_it_by_more_than_half():
    """The rates of a quiet run (168.8/s passed 20-s steps; 70 held, 80 failed)
    played through the holds: they end between 70 and 80 within MAX_HOLDS."""

    def holds(rate: float) -> bool:
        return rate <= 75.0

    rate, held, failed, tried = 168.8, None, None, []
    while rate is not None and len(tried) < capacity.MAX_HOLDS:
        tried.append(rate)
        if holds(rate):
            held = rate
        else:
            failed = rate
        rate = next_hold(held, failed, 0.1)
    assert rate is None, tried
    assert held is not None, tried
    assert failed is not None, tried
    assert 63 <= held <= 75, tried
    assert (failed - held) / held <= 0.1, tried
