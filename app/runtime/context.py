"""What a job body and a pre-check are handed when they run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.config import Settings
from app.store.database import Database, cap_statements


@dataclass(frozen=True, kw_only=True)
class PreCheckContext:
    """What a pre-check sees. `session` is the lock transaction: read, don't commit."""

    job_name: str
    scheduled_for: datetime
    trigger: str
    session: Session
    settings: Settings


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """What a job body is handed for one run."""

    job_name: str
    run_id: int
    scheduled_for: datetime
    trigger: str
    attempt: int
    settings: Settings
    logger: logging.Logger
    database: Database
    cancelled: threading.Event = field(default_factory=threading.Event)
    timeout_s: float | None = None
    transaction: Connection | None = None
    lease_lost: Callable[[], bool] = field(default=lambda: False, repr=False)

    def should_stop(self) -> bool:
        """True once the worker asks the body to stop (its claim is no longer trusted)."""
        return self.cancelled.is_set() or self.lease_lost()

    def session(self) -> Session:
        """A session for work in cronlock's database.

        For a transactional job, the session works inside the run's transaction,
        which also records its SUCCESS: ``commit()`` and ``close()`` on it leave that
        transaction to cronlock, so ``with ctx.session() as s:`` is safe. Otherwise
        a new session, whose statements are capped by the job's timeout.
        """
        if self.transaction is not None:
            return Session(bind=self.transaction, join_transaction_mode="rollback_only")
        session = self.database.session()
        if self.timeout_s is not None:
            cap_statements(session, self.timeout_s)
        return session
