"""Run statistics from per-day counts: totals, average and an approximate p95.

The database keeps, per job and UTC day, a histogram of run durations in buckets
an eighth of a power of two wide (revision 0006): bucket 0 holds runs under a
millisecond, bucket b >= 1 those in [2^((b-1)/8), 2^(b/8)) ms. Histograms of
different days add up, and a percentile read as its bucket's geometric middle
is within about 4.5% of the exact one, which is plenty for "how long does it take".
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

BUCKETS_PER_DOUBLING = 8


def bucket_of(duration_ms: float) -> int:
    """The bucket a duration falls in (the same arithmetic as the database's)."""
    if duration_ms < 1:
        return 0
    return 1 + math.floor(BUCKETS_PER_DOUBLING * math.log2(duration_ms))


def bucket_middle_ms(bucket: int) -> float:
    """A bucket's representative duration: its geometric middle (0.5 ms for bucket 0)."""
    if bucket <= 0:
        return 0.5
    return float(2 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING))


def percentile_ms(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The duration below which `fraction` of the counted runs fall; None with no runs."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = math.ceil(fraction * total)
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_middle_ms(bucket)
    return bucket_middle_ms(max(histogram))  # pragma: no cover - rank <= total


@dataclass(frozen=True)
class DayCounts:
    """One job's outcomes recorded on one day."""

    runs: int
    failures: int
    skipped: int
    missed: int
    duration_ms_sum: float
    durations: Mapping[int, int]


@dataclass(frozen=True)
class RunStats:
    """A job's runs (SUCCESS or FAILURE) over a window, and how long they took."""

    runs: int = 0
    failures: int = 0
    skipped: int = 0
    missed: int = 0
    average_ms: float | None = None
    p95_ms: float | None = None

    @property
    def average_s(self) -> float | None:
        """The average in seconds, as the CLI shows it."""
        return None if self.average_ms is None else self.average_ms / 1000

    @property
    def p95_s(self) -> float | None:
        """The p95 in seconds, as the CLI shows it."""
        return None if self.p95_ms is None else self.p95_ms / 1000


def summarize(days: Iterable[DayCounts]) -> RunStats:
    """Add up a job's days."""
    runs = failures = skipped = missed = 0
    total_ms = 0.0
    histogram: Counter[int] = Counter()
    for day in days:
        runs += day.runs
        failures += day.failures
        skipped += day.skipped
        missed += day.missed
        total_ms += day.duration_ms_sum
        histogram.update(day.durations)
    return RunStats(
        runs=runs,
        failures=failures,
        skipped=skipped,
        missed=missed,
        average_ms=total_ms / runs if runs else None,
        p95_ms=percentile_ms(histogram, 0.95),
    )
