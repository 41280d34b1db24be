"""Closing runs whose worker died, whichever job they belong to.

A claim takes over a stale run of the job it claims; but a job whose next instant
is an hour away would keep a dead worker's run RUNNING for that hour, and every
view of the ledger would show it running. So the worker also sweeps: once when it
starts, and whenever it has seen a run RUNNING on another worker, it reads the
RUNNING runs (an indexed read of at most one row per job) at the moment the
earliest of them could be stale, closes the stale ones FAILURE (`abandoned: ...`),
and plans the next read from what is still running. While nothing it knows of is
RUNNING, it sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from app.core.job import ConfiguredJob
from app.store.facade import Store


class StaleRunSweep:
    """When to look for abandoned runs, and closing them."""

    def __init__(
        self,
        store: Store,
        jobs: Iterable[ConfiguredJob],
        *,
        stale_after_s: float,
        interval_s: float,
        worker_id: str,
    ) -> None:
        self._store = store
        self._by_name = {j.name: j for j in jobs}
        self._stale_after_s = stale_after_s
        self._interval_s = interval_s
        self._worker_id = worker_id
        self.next_at: datetime | None = None

    def expect(self, at: datetime) -> None:
        """Sweep at `at`, or earlier if a sweep is planned already."""
        self.next_at = min(self.next_at or at, at)

    def saw_running(self, now: datetime) -> None:
        """A run is RUNNING on another worker: sweep when it could be stale at the latest."""
        self.expect(now + timedelta(seconds=self._stale_after_s + self._interval_s))

    def sweep(self, now: datetime) -> list[Any]:
        """Close the stale RUNNING runs, if a sweep is due; the runs closed."""
        if self.next_at is None or now < self.next_at:
            return []
        found = self._store.close_stale_runs(
            stale_after_s=self._stale_after_s, by=self._worker_id, retry=self._retries(now)
        )
        self.next_at = None  # only once it answered: after an outage the sweep is still due
        if found.next_stale_in_s is not None:
            # A moment after it would go stale: a live run has renewed by then.
            wait_s = max(found.next_stale_in_s, 0.0) + min(self._interval_s, 1.0)
            self.expect(now + timedelta(seconds=wait_s))
        return found.closed

    def _retries(self, now: datetime) -> Callable[[Any], bool]:
        """Whether an abandoned run is due again: its job has retries left, and its
        instant is still current (the job's next instant has not come)."""

        def retry(row: Any) -> bool:
            configured = self._by_name.get(row.job_name)
            if configured is None or not configured.enabled:
                return False
            within_retries: bool = row.attempt <= configured.job.retries
            return within_retries and now < configured.schedule.next_after(row.scheduled_for)

        return retry
