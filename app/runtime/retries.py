"""Which failed runs are due again: read from the table, so any replica can run them.

Retries come from failures, which happen at instants, so the table is read when
something is due or a retry this worker knows of comes due; otherwise once per
stale threshold, to take over runs whose worker died. A worker whose jobs have
no retries never reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from app.core.job import ConfiguredJob
from app.core.planning import PendingInstant
from app.store.facade import Store

logger = logging.getLogger(__name__)


class RetryQueue:
    """When to read the pending retries, and what they add to the worker's queue."""

    def __init__(self, store: Store, jobs: Iterable[ConfiguredJob], *, stale_after_s: float):
        self._store = store
        self._by_name: Mapping[str, ConfiguredJob] = {j.name: j for j in jobs}
        self._stale_after_s = stale_after_s
        self.in_use = any(j.enabled and j.job.retries for j in self._by_name.values())
        self.next_retry_at: datetime | None = None
        self._scan_at = datetime.min.replace(tzinfo=UTC)  # scan at the first tick

    def note(self, retry_at: datetime) -> None:
        """A retry comes due at `retry_at` (on this worker's clock)."""
        self.next_retry_at = min(self.next_retry_at or retry_at, retry_at)

    def scan(
        self, now: datetime, *, something_due: bool, queued: set[tuple[str, datetime]]
    ) -> list[PendingInstant]:
        """The retries due now and not yet queued, when it is time to read them."""
        retry_passed = self.next_retry_at is not None and now >= self.next_retry_at
        if not (something_due or retry_passed or now >= self._scan_at):
            return []
        self._scan_at = now + timedelta(seconds=self._stale_after_s)
        if not self.in_use:
            return []
        self.next_retry_at = None
        found: list[PendingInstant] = []
        for row in self._store.pending_retries(stale_after_s=self._stale_after_s):
            configured = self._by_name.get(row.job_name)
            if configured is None or not configured.enabled or not configured.job.retries:
                continue
            if not row.due:
                # On this worker's clock: a retry_at read as a time would look due
                # early to a worker whose clock runs ahead, and it would scan in a loop.
                self.note(now + timedelta(seconds=float(row.wait_s)))
            elif (row.job_name, row.scheduled_for) not in queued:
                expires_at = configured.schedule.next_after(row.scheduled_for)
                found.append(PendingInstant(configured, row.scheduled_for, expires_at, retry=True))
        return found

    def drop(self, expired: Iterable[PendingInstant]) -> None:
        """Give up retries whose job's next instant came first (their run stays FAILURE)."""
        keys = [item.key for item in expired if item.retry]
        if not keys:
            return
        for job_name, scheduled_for in self._store.drop_retries(keys):
            logger.warning(
                "gave up the retry of %s for %s: the job's next instant came first",
                job_name,
                scheduled_for.isoformat(),
                extra={
                    "event": "retry_expired",
                    "job": job_name,
                    "scheduled_for": scheduled_for.isoformat(),
                },
            )
