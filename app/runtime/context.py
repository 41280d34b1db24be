"""What a job body and a pre-check are handed when they run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select
from sqlalchemy.orm import Session

from app.config import Settings
from app.runtime.batches import Batches
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
    params: Any = None  # the job's params model, validated (None: the job takes none)
    dry_run: bool = False
    _dry_connections: list[Connection] = field(default_factory=list, repr=False)

    def should_stop(self) -> bool:
        """True once the worker asks the body to stop (its claim is no longer trusted)."""
        return self.cancelled.is_set() or self.lease_lost()

    def session(self) -> Session:
        """A session for work in cronlock's database.

        For a transactional job, the session works inside the run's transaction,
        which also records its SUCCESS: ``commit()`` and ``close()`` on it leave that
        transaction to cronlock, so ``with ctx.session() as s:`` is safe. Otherwise
        a new session, whose statements are capped by the job's timeout.

        In a dry run, the session works in a transaction that is always rolled back
        when the run ends, whatever the body commits: the contract is that a dry
        run writes nothing, and this makes it so for cronlock's database.
        """
        # In a dry run, a savepoint: a body's rollback() and commit() then stay inside
        # the transaction cronlock rolls back (with rollback_only, a rollback would end
        # it and the next commit would commit for real).
        if self.transaction is not None and self.dry_run:
            return Session(bind=self.transaction, join_transaction_mode="create_savepoint")
        if self.transaction is not None:
            return Session(bind=self.transaction, join_transaction_mode="rollback_only")
        if self.dry_run:
            conn = self.database.engine.connect()
            conn.begin()
            self._dry_connections.append(conn)
            session = Session(bind=conn, join_transaction_mode="create_savepoint")
            if self.timeout_s is not None:
                cap_statements(session, self.timeout_s)
            return session
        session = self.database.session()
        if self.timeout_s is not None:
            cap_statements(session, self.timeout_s)
        return session

    def batches(
        self, items: Iterable[Any] | Select[Any], *, size: int = 100, limit: int | None = None
    ) -> Batches:
        """Work through `items` (an iterable, or a SQLAlchemy select) in batches of `size`,
        at most `limit` items: see `Batches.each`."""
        return Batches(self, items, size=size, limit=limit)

    def end_dry_run(self) -> None:
        """Roll back and close what a dry run's sessions wrote (the run is ending)."""
        while self._dry_connections:
            conn = self._dry_connections.pop()
            try:
                conn.rollback()
            except Exception:  # a broken connection: nothing of it was committed
                self.logger.warning("could not roll back a dry run's session", exc_info=True)
            finally:
                conn.close()
