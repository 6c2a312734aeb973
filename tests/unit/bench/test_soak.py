"""The pure parts of ``make soak`` (bench/bench_soak.py): the growth rule,
the samples as CSV, the load rounds, and which server errors a fault excuses."""

from __future__ import annotations

import csv

import pytest

from tests.support import bench_module

soak = bench_module("bench_soak")


def points(values) -> list[tuple[float, float | None]]:
    return [(10.0 * i, v) for i, v in enumerate(values)]


# -- the growth rule


def test_a_series_that_stays_flat_after_the_warm_up_does_not_grow():
    verdict = soak.growth("rss_mb[orders]", points([80.0] * 30), warmup=0)
    assert verdict.judged
    assert not verdict.grows
    assert verdict.first == verdict.last == 80.0
    assert verdict.ratio == 1.0


def test_a_series_that_climbs_past_the_tolerance_grows():
    climbing = [100.0 + i for i in range(40)]  # +39% over the run
    verdict = soak.growth("rss_mb[orders]", points(climbing), warmup=0)
    assert verdict.grows
    assert verdict.verdict == "GROWS"
    assert verdict.last > verdict.limit


def test_growth_within_the_tolerance_is_not_growth():
    gentle = [100.0 + 0.2 * i for i in range(40)]  # +7.8% end to end, less between the windows' medians
    assert not soak.growth("rss_mb[orders]", points(gentle), warmup=0).grows


def test_the_warm_up_is_left_out_of_the_rule():
    # Growing fast while warming up (pools filling), flat after.
    values = [20.0 + 5 * i for i in range(10)] + [70.0] * 30
    assert soak.growth("rss_mb[users]", points(values), warmup=100.0).first == 70.0
    assert not soak.growth("rss_mb[users]", points(values), warmup=100.0).grows
    assert soak.growth("rss_mb[users]", points(values), warmup=0.0).grows


def test_a_faults_spikes_in_the_last_window_do_not_make_a_flat_series_grow():
    values = [50.0] * 30
    values[-2] = values[-5] = 400.0  # a restart's lag, a frozen broker's p99
    assert not soak.growth("p99_ms", points(values), warmup=0).grows


def test_the_slack_lets_a_small_count_move_by_a_few_but_not_by_many():
    assert not soak.growth("fds[gateway]", points([20.0] * 15 + [23.0] * 15), warmup=0).grows
    assert soak.growth("fds[gateway]", points([20.0] * 15 + [30.0] * 15), warmup=0).grows


def test_missing_values_are_skipped_not_read_as_zero():
    values: list[float | None] = [None if i % 3 == 0 else 60.0 for i in range(30)]
    verdict = soak.growth("rss_mb[ops]", points(values), warmup=0)
    assert verdict.first == verdict.last == 60.0


def test_too_few_samples_after_the_warm_up_are_not_judged_and_do_not_fail():
    verdict = soak.growth("threads[ops]", points([10.0] * 8), warmup=50.0)
    assert not verdict.judged
    assert not verdict.grows
    assert verdict.verdict.startswith("not judged")


def test_judge_rules_on_every_series_a_sample_has():
    samples = [{"elapsed_s": 10.0 * i, "fds[a]": 10.0, **({"fds[b]": 10.0 + i} if i > 5 else {})} for i in range(30)]
    verdicts = {g.series: g for g in soak.judge(samples, warmup=0)}
    assert set(verdicts) == {"fds[a]", "fds[b]"}
    assert not verdicts["fds[a]"].grows
    assert verdicts["fds[b]"].grows


# -- the samples as CSV


def test_samples_round_trip_through_csv_with_a_column_per_series_and_blanks_where_missing(tmp_path):
    samples = [
        {"elapsed_s": 0.0, "rss_mb[gateway]": 61.5, "p99_ms": None},
        {"elapsed_s": 10.0, "rss_mb[gateway]": 62.0, "rss_mb[outboxer-2]": 40.0, "p99_ms": 120.0},
    ]
    path = tmp_path / "samples.csv"
    soak.write_samples(path, samples, started=1_800_000_000.0)
    with path.open() as source:
        rows = list(csv.reader(source))
    assert rows[0] == ["elapsed_s", "utc", "p99_ms", "rss_mb[gateway]", "rss_mb[outboxer-2]"]
    assert rows[1][1] == "2027-01-15T08:00:00Z"
    assert rows[1][2] == ""
    assert rows[1][4] == ""
    assert soak.read_samples(path) == [
        {"elapsed_s": 0.0, "p99_ms": None, "rss_mb[gateway]": 61.5, "rss_mb[outboxer-2]": None},
        {"elapsed_s": 10.0, "p99_ms": 120.0, "rss_mb[gateway]": 62.0, "rss_mb[outboxer-2]": 40.0},
    ]


def test_faults_round_trip_through_csv(tmp_path):
    faults = [
        soak.FaultRecord(95.0, 101.5, "kill", "SIGKILL: three workers"),
        soak.FaultRecord(300.0, 301.0, "x", "", "boom"),
    ]
    soak.write_faults(tmp_path / "faults.csv", faults)
    assert soak.read_faults(tmp_path / "faults.csv") == faults


def test_a_chart_is_drawn_for_each_series_with_a_file_name_of_its_own(tmp_path):
    samples = [
        {"elapsed_s": 10.0 * i, "rss_mb[orders-consumer-2]": 50.0, "pg_connections[goshop_orders]": 3.0}
        for i in range(12)
    ]
    faults = [soak.FaultRecord(40.0, 52.0, "freeze-broker", "frozen")]
    written = soak.draw_charts(tmp_path, samples, faults, warmup=20.0)
    assert sorted(p.name for p in written) == ["pg_connections-goshop_orders.png", "rss_mb-orders-consumer-2.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)


# -- durations and rounds


@pytest.mark.parametrize(
    ("text", "seconds"), [("60m", 3600), ("1h", 3600), ("1h30m", 5400), ("90s", 90), ("600", 600), ("10m", 600)]
)
def test_durations_read_hours_minutes_and_seconds(text, seconds):
    assert soak.duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "0s"])
def test_a_duration_that_is_not_one_is_refused(text):
    with pytest.raises(Exception, match="duration"):
        soak.duration_seconds(text)


def test_the_warm_up_is_a_share_of_the_run_or_a_duration():
    assert soak.warmup_seconds("10%", 3600) == 360
    assert soak.warmup_seconds("5m", 3600) == 300


def test_rounds_fill_the_soak_and_none_exceeds_make_loads_bound():
    for total in (150, 600, 3600, 3630, 3700, 20):
        rounds = soak.round_lengths(total, 300)
        assert all(seconds <= soak.MAX_SECONDS for seconds in rounds)
        assert abs(sum(rounds) - total) < 30 or total < 30
    assert soak.round_lengths(3600, 300) == [300] * 12
    assert soak.round_lengths(3620, 300) == [300] * 11 + [320]
    assert soak.round_lengths(3640, 300) == [300] * 12 + [40]


# -- server errors during faults


def test_503s_all_during_faults_are_admitted():
    spans = [(1000.0, 1010.0)]
    assert soak.admitted_server_errors({"201": 90, "503": 5}, [1003.0, 1012.0], spans, failures=5, counted=5) == 5


def test_a_503_long_after_every_fault_is_not_admitted():
    spans = [(1000.0, 1010.0)]
    late = 1010.0 + soak.FAULT_GRACE + 5
    assert soak.admitted_server_errors({"503": 2}, [1003.0, late], spans, failures=2, counted=2) == 0


def test_another_server_error_than_503_is_never_admitted():
    spans = [(1000.0, 1010.0)]
    assert soak.admitted_server_errors({"503": 2, "500": 1}, [1003.0], spans, failures=3, counted=3) == 0


def test_failures_the_history_did_not_time_are_not_admitted():
    spans = [(1000.0, 1010.0)]
    assert soak.admitted_server_errors({"503": 3}, [1003.0], spans, failures=3, counted=2) == 0


def test_failure_moments_are_the_seconds_at_which_the_failure_count_rose(tmp_path):
    history = tmp_path / "locust_stats_history.csv"
    rows = [
        ["Timestamp", "User Count", "Type", "Name", "Total Failure Count"],
        ["100", "20", "", "Aggregated", "0"],
        ["101", "20", "POST", "/v1/checkout", "3"],
        ["101", "20", "", "Aggregated", "2"],
        ["102", "20", "", "Aggregated", "2"],
        ["103", "20", "", "Aggregated", "5"],
    ]
    with history.open("w", newline="") as out:
        csv.writer(out).writerows(rows)
    assert soak.failure_moments(history) == [101.0, 103.0]
    assert soak.history_failures(history) == 5


def test_metric_sum_adds_the_samples_of_a_name_whose_labels_match():
    text = (
        "# TYPE goshop_consumer_lag gauge\n"
        'goshop_consumer_lag{consumer="orders",partition="0",topic="payments.events"} 3.0\n'
        'goshop_consumer_lag{consumer="orders",partition="1",topic="payments.events"} 4.0\n'
        'goshop_consumer_lag_other{consumer="orders"} 100.0\n'
    )
    assert soak.metric_sum(text, "goshop_consumer_lag", {}) == 7.0
    assert soak.metric_sum(text, "goshop_consumer_lag", {"partition": "1"}) == 4.0


def test_a_context_series_is_sampled_but_never_fails_the_soak():
    verdict = soak.growth("cpu_cores[machine]", points([0.5] * 15 + [1.8] * 15), warmup=0)
    assert verdict.grows
    assert not verdict.fails
    assert verdict.verdict == "context (not judged): grows"


def test_a_growth_with_a_known_cause_is_said_but_does_not_fail_the_soak():
    series = next(iter(soak.KNOWN_GROWTH))
    verdict = soak.growth(series, points([20.0 + i for i in range(30)]), warmup=0)
    assert verdict.grows
    assert not verdict.fails
    assert verdict.verdict == "grows: known cause"


def test_an_unexplained_growth_fails_the_soak():
    assert soak.growth("rss_mb[orders]", points([80.0 + 2 * i for i in range(30)]), warmup=0).fails


def test_the_automatic_warm_up_is_a_tenth_of_the_run_at_least_six_minutes_at_most_half():
    assert soak.warmup_seconds("auto", 3600) == 360
    assert soak.warmup_seconds("auto", 7200) == 720
    assert soak.warmup_seconds("auto", 600) == 300
