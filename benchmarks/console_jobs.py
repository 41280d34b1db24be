"""The console benchmark's deployment: 200 no-op jobs of varied schedules (its JOBS_MODULE).

`SPECS` says, for each job, how often it fires (`period_s`, `offset_s` from the Unix
epoch, in UTC), so the seed can lay out its instants in SQL, and how long its runs
take (`base_ms`). The mix: one job every 30 s, 18 every minute, every 5 and 15
minutes, 40 hourly, 16 every four hours, 85 daily, 15 weekly, and 5 daily jobs with
parameters that also run by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from app.job import Job, RunContext

MINUTE, HOUR, DAY = 60, 3600, 86400
EPOCH_WEEKDAY = 4  # 1970-01-01 was a Thursday (cron's 0 is Sunday)
GOLDEN = 0.6180339887


@dataclass(frozen=True)
class Spec:
    """One job of the benchmark: its schedule, where its instants fall, how long it runs."""

    name: str
    schedule: str
    period_s: int
    offset_s: int
    base_ms: float
    with_params: bool = False


class BackfillParams(BaseModel):
    """What a run by hand of a backfill job may say (scheduled runs use the defaults)."""

    days: int = 1
    table: str = "events"


def _noop(ctx: RunContext) -> None:
    """Nothing: `cronlock serve` never runs a scheduled instant."""


def _base_ms(index: int) -> float:
    """A typical duration, spread evenly over 10 ms to 10 s on a log scale."""
    return float(10 ** (1 + 3 * ((index * GOLDEN) % 1)))


def _specs() -> list[Spec]:
    shapes: list[tuple[str, str, int, int]] = [("heartbeat-30s", "every 30s", 30, 0)]
    shapes += [(f"minutely-{i:02d}", "* * * * *", MINUTE, 0) for i in range(18)]
    shapes += [(f"five-min-{i:02d}", "*/5 * * * *", 5 * MINUTE, 0) for i in range(8)]
    shapes += [(f"quarter-hour-{i:02d}", "*/15 * * * *", 15 * MINUTE, 0) for i in range(12)]
    shapes += [
        (f"hourly-{i:02d}", f"{(7 * i) % 60} * * * *", HOUR, ((7 * i) % 60) * MINUTE)
        for i in range(40)
    ]
    shapes += [
        (f"four-hourly-{i:02d}", f"{(11 * i) % 60} */4 * * *", 4 * HOUR, ((11 * i) % 60) * MINUTE)
        for i in range(16)
    ]
    shapes += [
        (
            f"daily-{i:02d}",
            f"{(13 * i) % 60} {i % 24} * * *",
            DAY,
            (i % 24) * HOUR + ((13 * i) % 60) * MINUTE,
        )
        for i in range(85)
    ]
    shapes += [
        (
            f"weekly-{i:02d}",
            f"30 {2 + i % 5} * * {i % 7}",
            7 * DAY,
            ((i % 7 - EPOCH_WEEKDAY) % 7) * DAY + (2 + i % 5) * HOUR + 30 * MINUTE,
        )
        for i in range(15)
    ]
    specs = [
        Spec(name, schedule, period, offset, _base_ms(index))
        for index, (name, schedule, period, offset) in enumerate(shapes)
    ]
    specs += [
        Spec(f"backfill-{i:02d}", f"0 {1 + i} * * *", DAY, (1 + i) * HOUR, 2000.0, True)
        for i in range(5)
    ]
    return specs


SPECS = _specs()
TIMELINE_JOB = "minutely-00"

JOBS = [
    Job(
        name=spec.name,
        body=_noop,
        schedule=spec.schedule,
        description=f"benchmark job, about {spec.base_ms:.0f} ms a run",
        retries=1,
        params=BackfillParams if spec.with_params else None,
    )
    for spec in SPECS
]
