"""Keeping a claim alive: a heartbeat on the RUNNING row while the body runs.

A background thread renews ``heartbeat_at`` (database clock) every
HEARTBEAT_INTERVAL_SECONDS on a pooled connection of its own. Staleness is judged
on that heartbeat, so a six-hour job is never taken over while its worker lives,
and a dead worker's run is recovered about STALE_JOB_THRESHOLD_SECONDS after its
last beat.

The lease is lost, and the run's cancellation flag raised, when:
- a renewal finds the row no longer RUNNING under this run id (taken over), or
- renewals have failed for longer than the stale threshold (self-fencing: another
  worker may already consider the run abandoned).
"""

from __future__ import annotations

import logging
import threading
import time

from app.db import Database
from app.errors import DatabaseError
from app.outcomes import renew_lease

logger = logging.getLogger(__name__)


class Lease:
    """The heartbeat of one run; use as a context manager around the body."""

    def __init__(
        self,
        database: Database,
        *,
        run_id: int,
        job_name: str,
        interval_s: float,
        stale_after_s: float,
        cancelled: threading.Event,
    ) -> None:
        self.database = database
        self.run_id = run_id
        self.job_name = job_name
        self.interval_s = interval_s
        self.stale_after_s = stale_after_s
        self.cancelled = cancelled
        self.lost_reason: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{run_id}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=self.interval_s + 5)

    @property
    def lost(self) -> bool:
        """True once this worker must no longer trust its claim."""
        return self.lost_reason is not None

    def _lose(self, reason: str) -> None:
        self.lost_reason = reason
        self.cancelled.set()
        logger.error(
            "run %s of %s lost its lease: %s; asking the job to stop",
            self.run_id,
            self.job_name,
            reason,
            extra={"event": "lease_lost", "job": self.job_name, "run_id": self.run_id},
        )

    def _beat(self) -> None:
        last_renewed = time.monotonic()
        while not self._done.wait(self.interval_s):
            try:
                still_ours = renew_lease(self.database, self.run_id)
            except DatabaseError as exc:
                silent_s = time.monotonic() - last_renewed
                logger.warning(
                    "heartbeat of run %s failed (%.0fs since the last one): %s",
                    self.run_id,
                    silent_s,
                    exc.message,
                    extra={"event": "heartbeat_failed", "run_id": self.run_id},
                )
                if silent_s > self.stale_after_s:
                    self._lose(f"no heartbeat landed for {silent_s:.0f}s")
                    return
                continue
            if not still_ours:
                self._lose("another worker took the run over")
                return
            last_renewed = time.monotonic()
