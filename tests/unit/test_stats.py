"""Run statistics from per-day counts: buckets, merging days, an approximate p95."""

import math
import random

import pytest

from app.core.stats import (
    DayCounts,
    bucket_middle_ms,
    bucket_of,
    percentile_ms,
    summarize,
)


def test_buckets_are_an_eighth_of_a_doubling_wide():
    assert bucket_of(0.0) == 0
    assert bucket_of(0.99) == 0
    assert bucket_of(1.0) == 1
    assert bucket_of(2.0) == 9
    assert bucket_of(1024.0) == 81
    # A duration falls inside its bucket, whose middle is close to it.
    for duration in (1.0, 3.3, 47.0, 999.9, 86_400_000.0):
        middle = bucket_middle_ms(bucket_of(duration))
        assert abs(middle - duration) / duration < 0.045


def test_percentile_is_within_the_promised_error_of_the_exact_one():
    generator = random.Random(7)
    durations = [generator.lognormvariate(5, 1.2) + 1 for _ in range(5000)]
    histogram: dict[int, int] = {}
    for duration in durations:
        histogram[bucket_of(duration)] = histogram.get(bucket_of(duration), 0) + 1
    exact = sorted(durations)[math.ceil(0.95 * len(durations)) - 1]
    approximate = percentile_ms(histogram, 0.95)
    assert approximate is not None
    assert abs(approximate - exact) / exact < 0.045


def test_no_runs_no_percentile():
    assert percentile_ms({}, 0.95) is None


def test_days_add_up():
    days = [
        DayCounts(runs=3, failures=1, skipped=2, missed=0, duration_ms_sum=30.0, durations={27: 3}),
        DayCounts(runs=1, failures=0, skipped=0, missed=4, duration_ms_sum=10.0, durations={27: 1}),
    ]
    stats = summarize(days)
    assert (stats.runs, stats.failures, stats.skipped, stats.missed) == (4, 1, 2, 4)
    assert stats.average_ms == pytest.approx(10.0)
    assert stats.p95_ms == pytest.approx(bucket_middle_ms(27))
    assert stats.average_s == pytest.approx(0.01)


def test_a_job_that_only_skipped_has_no_durations():
    stats = summarize([DayCounts(0, 0, 5, 0, 0.0, {})])
    assert stats.runs == 0
    assert stats.average_ms is None
    assert stats.p95_ms is None
    assert stats.p95_s is None
