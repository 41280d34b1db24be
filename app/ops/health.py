"""Liveness, readiness and /metrics, for probes and Prometheus (served by `app.console`).

/healthz: the worker's loop went round recently, or, during a run, its heartbeat
thread said so (every 5 s, whether renewals land or not: a long job blocks the
loop but is alive, and a database outage is not a wedged worker).
/readyz: the database answers and its schema is at head.
/metrics: the Prometheus exposition of `app.ops.metrics`.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.errors import CronlockError
from app.ops.metrics import REGISTRY
from app.store.database import Database
from app.store.migrations import ensure_at_head

logger = logging.getLogger(__name__)


class Liveness:
    """When the worker last proved it is alive; stamped by the loop and the lease thread."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def beat(self) -> None:
        """The loop went round, or a running job's lease was renewed."""
        self._last = time.monotonic()

    def age_s(self) -> float:
        """Seconds since the last beat."""
        return time.monotonic() - self._last


class Probes:
    """What /healthz and /readyz answer: (status, text)."""

    def __init__(
        self, database: Database, liveness: Liveness | None, *, max_silence_s: float
    ) -> None:
        self.database = database
        self.liveness = liveness
        self.max_silence_s = max_silence_s

    def readiness(self) -> tuple[int, str]:
        """200 when the database answers and the schema is at head."""
        try:
            self.database.ping()
            ensure_at_head(self.database)
        except CronlockError as exc:
            return 503, exc.message
        return 200, "ready"

    def liveness_status(self) -> tuple[int, str]:
        """200 when the loop or a running job's lease proved alive recently (always, for
        a process that runs no loop: `cronlock serve`)."""
        if self.liveness is None:
            return 200, "alive"
        age_s = self.liveness.age_s()
        if age_s > self.max_silence_s:
            return 503, f"the worker's loop has not gone round for {age_s:.0f}s"
        return 200, "alive"

    @staticmethod
    def metrics() -> tuple[bytes, str]:
        """The Prometheus exposition and its content type."""
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
