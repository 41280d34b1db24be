"""Keeping a claim alive: the heartbeat on the RUNNING row while the body runs.

One background thread per worker (`Heartbeat`) renews the current run's
``heartbeat_at`` (database clock) every HEARTBEAT_INTERVAL_SECONDS on a pooled
connection of its own. A short run never wakes it: starting a thread per run
cost more than the run. Staleness is judged on that heartbeat, so a six-hour job
is never taken over while its worker lives, and a dead worker's run is recovered
about STALE_JOB_THRESHOLD_SECONDS after its last beat.

A run's `Lease` is lost, and the run's cancellation flag raised, when:
- a renewal finds the row no longer RUNNING under this run id (taken over), or
- no renewal has landed for the stale threshold less one heartbeat interval
  (self-fencing, before any other worker may consider the run abandoned).

The deadline is read from the monotonic clock whenever anyone asks (the body's
`should_stop()`, the runner's verdict), so a renewal stuck on a dead connection
cannot keep a claim alive. A renewal waits at most one interval (and at most
10 s) for a row lock or the server, and no Exception ends the thread; one that
dies otherwise is started again by the next run.

While a run is tracked, the thread also tells the worker it is alive every
`alive_every_s`, whether renewals land or not: a long run blocks the loop, and a
database outage is not a wedged process, so neither may trip /healthz or the
systemd watchdog.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from app.core.outcomes import Outcome, RunStatus
from app.errors import DatabaseError
from app.store.facade import Store

logger = logging.getLogger(__name__)

# A renewal waits at most this (or one interval, if shorter) for a row lock or the
# server: the thread that renews also reports liveness, which must not go quiet
# for long, whatever HEARTBEAT_INTERVAL_SECONDS is.
MAX_RENEWAL_WAIT_S = 10.0
MAX_IGNORED_TIMEOUT_GRACE_S = 30.0


def ignored_timeout_grace_s(timeout_s: float) -> float:
    """How long a body may go on after its timeout fired before it is given up: as long
    again as its timeout, at least a second and at most 30 s."""
    return min(max(timeout_s, 1.0), MAX_IGNORED_TIMEOUT_GRACE_S)


@dataclass
class Lease:
    """The claim on one run, as far as this worker can still trust it.

    `last_renewed` is when the latest renewal that landed was sent (monotonic), so
    the run's heartbeat in the database is no older than that; before the first,
    when the lease was made, just after the claim committed (the one interval of
    margin covers that commit's latency).
    """

    run_id: int
    job_name: str
    fence_after_s: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    last_renewed: float = field(default_factory=time.monotonic)
    next_beat_at: float = 0.0
    lost_reason: str | None = None
    # For a job with a timeout: when a body that ignored its interrupt is given up
    # (set as the body starts, see `body_started`), and whether it was.
    give_up_at: float | None = None
    timeout_s: float | None = None
    given_up: bool = False
    _losing: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def lost(self) -> bool:
        """True once this worker must no longer trust its claim (checks the deadline)."""
        if self.lost_reason is None:
            silent_s = time.monotonic() - self.last_renewed
            if silent_s > self.fence_after_s:
                self.lose(f"no heartbeat landed for {silent_s:.0f}s")
        return self.lost_reason is not None

    def lose(self, reason: str) -> None:
        """Stop trusting the claim and ask the body to stop (once; later reasons are dropped)."""
        with self._losing:
            if self.lost_reason is not None:
                return
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
        store: Store,
        *,
        interval_s: float,
        stale_after_s: float,
        on_alive: Callable[[], None] | None = None,
        alive_every_s: float = 5.0,
    ) -> None:
        self.store = store
        self.on_alive = on_alive
        self.alive_every_s = alive_every_s
        self._next_alive_at = 0.0
        self.interval_s = interval_s
        self.stale_after_s = stale_after_s
        self._state = threading.Condition()
        self._current: Lease | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def lease(self, run_id: int, job_name: str, *, timeout_s: float | None = None) -> Lease:
        """A new lease on a run just claimed, fenced one heartbeat before it may go stale.

        With `timeout_s`, a body still running `ignored_timeout_grace_s` after its
        timeout fired is given up (see `_give_up`).
        """
        fence_after_s = max(self.stale_after_s - self.interval_s, self.stale_after_s / 2)
        lease = Lease(run_id, job_name, fence_after_s, timeout_s=timeout_s)
        lease.next_beat_at = lease.last_renewed + self.interval_s
        return lease

    def body_started(self, lease: Lease) -> None:
        """The body starts now: its timeout, and the grace after it, count from here."""
        if lease.timeout_s is not None:
            grace_s = ignored_timeout_grace_s(lease.timeout_s)
            with self._state:
                lease.give_up_at = time.monotonic() + lease.timeout_s + grace_s
                self._state.notify()

    @contextmanager
    def track(self, lease: Lease) -> Iterator[Lease]:
        """Keep the lease's heartbeat going for the duration of the block."""
        with self._state:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
                self._thread.start()
            self._current = lease
            self._next_alive_at = time.monotonic() + self.alive_every_s
            self._state.notify()
        try:
            yield lease
        finally:
            with self._state:
                self._current = None
                self._state.notify()

    def ask_to_stop(self) -> None:
        """Ask the body of the run being tracked, if any, to stop (`ctx.should_stop()`)."""
        with self._state:
            if self._current is not None:
                self._current.cancelled.set()

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
                if lease is None or lease.given_up:
                    self._state.wait()  # a given-up body no longer counts as progress
                    continue
                now = time.monotonic()
                if lease.give_up_at is not None and now >= lease.give_up_at:
                    self._state.release()
                    try:
                        self._give_up(lease)
                    finally:
                        self._state.acquire()
                    continue
                if now >= self._next_alive_at:
                    self._next_alive_at = now + self.alive_every_s
                    self._say_alive()
                # lost_reason, not lost: a renewal due now must be sent before the
                # deadline is judged, or a late wake-up would give up a live run.
                if lease.lost_reason is not None:
                    # No more renewals, but the body still runs: keep the worker alive.
                    give_up_in = (lease.give_up_at or math.inf) - now
                    self._state.wait(min(self._next_alive_at - now, give_up_in))
                    continue
                due_in = lease.next_beat_at - now
                if due_in > 0:
                    give_up_in = (lease.give_up_at or math.inf) - now
                    self._state.wait(min(due_in, self._next_alive_at - now, give_up_in))
                    continue
                self._state.release()
                try:
                    self._renew(lease)
                finally:
                    self._state.acquire()

    def _give_up(self, lease: Lease) -> None:
        """A body that ignored its timeout: end its run FAILURE now, from this thread.

        Python cannot stop the main thread, so the body may go on; but the run
        is recorded (the job is free for its next instant on any replica), the
        lease is lost (`should_stop()` is true), and this thread stops reporting
        the worker alive, so /healthz fails and the systemd watchdog restarts it.
        """
        with self._state:
            if self._current is not lease or lease.given_up:
                return  # the body ended meanwhile: its own outcome is recorded
            lease.given_up = True
        grace_s = ignored_timeout_grace_s(lease.timeout_s or 0.0)
        reason = (
            f"timed out after {lease.timeout_s:g}s and did not stop within {grace_s:g}s more; "
            "given up while its body may still be running"
        )
        try:
            self.store.finish(lease.run_id, Outcome(RunStatus.FAILURE, error=reason))
        except Exception as exc:  # the run then ends abandoned once stale
            logger.warning(
                "could not record run %s given up: %s",
                lease.run_id,
                exc,
                extra={"event": "run_record_failed", "run_id": lease.run_id},
            )
        logger.critical(
            "run %s of %s %s; this worker stops reporting itself alive",
            lease.run_id,
            lease.job_name,
            reason,
            extra={"event": "body_given_up", "job": lease.job_name, "run_id": lease.run_id},
        )
        lease.lose(reason)

    def alive(self) -> None:
        """Tell the worker this process is making progress (its liveness and watchdog)."""
        if self.on_alive is not None:
            self.on_alive()

    def _say_alive(self) -> None:
        try:
            self.alive()
        except Exception:  # the thread must outlive it, as it outlives a failed renewal
            logger.warning(
                "could not report this worker alive", exc_info=True, extra={"event": "alive_failed"}
            )

    def _renew(self, lease: Lease) -> None:
        sent_at = time.monotonic()
        try:
            still_ours = self.store.renew(
                lease.run_id, timeout_s=min(self.interval_s, MAX_RENEWAL_WAIT_S)
            )
        except Exception as exc:  # any error is a renewal that did not land
            # The thread must outlive it: every later run of this worker relies on it.
            # A database error says all there is to say; anything else is a bug.
            expected = isinstance(exc, DatabaseError)
            logger.warning(
                "heartbeat of run %s failed (%.0fs since the last one): %s",
                lease.run_id,
                time.monotonic() - lease.last_renewed,
                str(exc) if expected else f"{type(exc).__name__}: {exc}",
                exc_info=not expected,
                extra={"event": "heartbeat_failed", "run_id": lease.run_id},
            )
            if not lease.lost:  # past the deadline, this loses the lease
                # Try again soon rather than a whole interval later.
                lease.next_beat_at = time.monotonic() + min(self.interval_s / 2, 1.0)
            return
        if still_ours:
            lease.last_renewed = sent_at
            # From when it was sent, as the deadline counts: the next renewal then
            # has the whole stale threshold less two intervals to land.
            lease.next_beat_at = sent_at + self.interval_s
            return
        with self._state:
            tracked = self._current is lease
        # Sent while the body ran, landed after the run's own finish: no takeover.
        # (A real one that late is caught by the finish's fence, and logged there.)
        if tracked:
            lease.lose("another worker took the run over")
