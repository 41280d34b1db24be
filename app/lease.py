"""Keeping a claim alive: the heartbeat on the RUNNING row while the body runs.

One background thread per worker (`Heartbeat`) renews the current run's
``heartbeat_at`` (database clock) every HEARTBEAT_INTERVAL_SECONDS on a pooled
connection of its own. A short run never wakes it: starting a thread per run
cost more than the run. Staleness is judged on that heartbeat, so a six-hour job
is never taken over while its worker lives, and a dead worker's run is recovered
about STALE_JOB_THRESHOLD_SECONDS after its last beat.

A run's `Lease` is lost, and the run's cancellation flag raised, when:
- a renewal finds the row no longer RUNNING under this run id (taken over), or
- renewals have failed for longer than the stale threshold (self-fencing: another
  worker may already consider the run abandoned).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from app.db import Database
from app.errors import DatabaseError
from app.outcomes import renew_lease

logger = logging.getLogger(__name__)


@dataclass
class Lease:
    """The claim on one run, as far as this worker can still trust it."""

    run_id: int
    job_name: str
    cancelled: threading.Event
    last_renewed: float = field(default_factory=time.monotonic)
    next_beat_at: float = 0.0
    lost_reason: str | None = None

    @property
    def lost(self) -> bool:
        """True once this worker must no longer trust its claim."""
        return self.lost_reason is not None

    def lose(self, reason: str) -> None:
        """Stop trusting the claim and ask the body to stop."""
        self.lost_reason = reason
        self.cancelled.set()
        logger.error(
            "run %s of %s lost its lease: %s; asking the job to stop",
            self.run_id,
            self.job_name,
            reason,
            extra={"event": "lease_lost", "job": self.job_name, "run_id": self.run_id},
        )


class Heartbeat:
    """Renews the lease of the run this worker is executing, from one background thread."""

    def __init__(
        self,
        database: Database,
        *,
        interval_s: float,
        stale_after_s: float,
        on_renewed: Callable[[], None] | None = None,
    ) -> None:
        self.database = database
        self.on_renewed = on_renewed
        self.interval_s = interval_s
        self.stale_after_s = stale_after_s
        self._state = threading.Condition()
        self._current: Lease | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    @contextmanager
    def track(self, run_id: int, job_name: str, cancelled: threading.Event) -> Iterator[Lease]:
        """Keep `run_id`'s heartbeat going for the duration of the block."""
        lease = Lease(run_id, job_name, cancelled)
        lease.next_beat_at = lease.last_renewed + self.interval_s
        with self._state:
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
                self._thread.start()
            self._current = lease
            self._state.notify()
        try:
            yield lease
        finally:
            with self._state:
                self._current = None
                self._state.notify()

    def close(self) -> None:
        """Stop the thread (the worker is stopping)."""
        with self._state:
            self._closed = True
            self._state.notify()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)

    def _beat(self) -> None:
        with self._state:
            while not self._closed:
                lease = self._current
                if lease is None or lease.lost:
                    self._state.wait()
                    continue
                due_in = lease.next_beat_at - time.monotonic()
                if due_in > 0:
                    self._state.wait(due_in)
                    continue
                self._state.release()
                try:
                    self._renew(lease)
                finally:
                    self._state.acquire()

    def _renew(self, lease: Lease) -> None:
        try:
            still_ours = renew_lease(self.database, lease.run_id)
        except DatabaseError as exc:
            silent_s = time.monotonic() - lease.last_renewed
            logger.warning(
                "heartbeat of run %s failed (%.0fs since the last one): %s",
                lease.run_id,
                silent_s,
                exc.message,
                extra={"event": "heartbeat_failed", "run_id": lease.run_id},
            )
            if silent_s > self.stale_after_s:
                lease.lose(f"no heartbeat landed for {silent_s:.0f}s")
            # Try again soon rather than a whole interval later.
            lease.next_beat_at = time.monotonic() + min(self.interval_s / 2, 1.0)
            return
        if still_ours:
            lease.last_renewed = time.monotonic()
            lease.next_beat_at = lease.last_renewed + self.interval_s
            if self.on_renewed is not None:
                self.on_renewed()  # a long run keeps the worker's liveness up
        else:
            lease.lose("another worker took the run over")
