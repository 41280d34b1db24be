"""How runs end: the statuses, an outcome and its result, and when a failure is retried.

Pure: the rules a result must meet to be stored, and the retry backoff, need no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.core.backoff import Backoff
from app.core.job import Job

MAX_RESULT_BYTES = 64 * 1024


class RunStatus(StrEnum):
    """Where a run stands. Stored as text, so adding a status needs no enum migration.

    SKIPPED: the instant was declined (the job's pre-check, an upstream that
    failed, a previous run still going). MISSED: no worker ran the instant in
    time. Both are outcomes written once, with their reason in error_message.
    """

    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    SKIPPED = "SKIPPED"
    MISSED = "MISSED"


class Trigger(StrEnum):
    """Why a run started."""

    SCHEDULE = "schedule"
    MANUAL = "manual"


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its status, and its result or error."""

    status: RunStatus
    result: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """A run this worker claimed, and how it ended."""

    run_id: int
    status: RunStatus
    duration_ms: float
    error: str | None = None
    recorded: bool = True
    retry_in_s: float | None = None  # None: no retry; else due in this many seconds


def retry_delay_s(job: Job, attempt: int) -> float | None:
    """How long after failed `attempt` the next is due: `retry_backoff_s`, doubling per
    attempt, jittered by half either way; None when the job has no retry left."""
    if attempt > job.retries:
        return None
    return Backoff(job.retry_backoff_s, jitter=0.5).delay_s(attempt)


def checked_result(value: Any) -> dict[str, Any] | None:
    """A body's return value as it will be stored; raises if PostgreSQL could not store it."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"a job returns a dict or None, not {type(value).__name__}")
    try:
        encoded = json.dumps(value, allow_nan=False)
    except ValueError:
        raise ValueError("the result holds NaN or Infinity, which JSON cannot store") from None
    if len(encoded) > MAX_RESULT_BYTES:
        raise ValueError(f"the result is {len(encoded)} bytes; keep it under {MAX_RESULT_BYTES}")
    decoded: dict[str, Any] = json.loads(encoded)
    if _holds_nul(decoded):
        raise ValueError("the result holds a NUL character, which PostgreSQL cannot store")
    return decoded


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


@dataclass
class TickReport:
    """What this worker did: outcomes of the runs it claimed, skips, misses."""

    outcomes: list[RunOutcome] = field(default_factory=list)
    skipped: int = 0
    expired: int = 0
    missed: int = 0

    @property
    def failed(self) -> int:
        """How many runs this worker claimed ended FAILURE."""
        return sum(o.status == RunStatus.FAILURE for o in self.outcomes)

    def add(self, other: TickReport) -> None:
        """Fold another report into this one."""
        self.outcomes += other.outcomes
        self.skipped += other.skipped
        self.expired += other.expired
        self.missed += other.missed
