"""What a job is: a named body with its schedule and options, and what it is handed when it runs."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, event, func, select
from sqlalchemy.orm import Session, SessionTransaction

from app.config import Settings
from app.errors import InvalidJob
from app.store.database import Database

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
MAX_NAME_LENGTH = 63


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


def cap_statements(session: Session, timeout_s: float) -> None:
    """Give every transaction of `session` a statement_timeout of `timeout_s`."""
    milliseconds = str(max(int(timeout_s * 1000), 1))

    @event.listens_for(session, "after_begin")
    def _cap(_s: Session, _tx: SessionTransaction, connection: Connection) -> None:
        connection.execute(select(func.set_config("statement_timeout", milliseconds, True)))


JobResult = Mapping[str, Any] | None
JobBody = Callable[[RunContext], JobResult]
PreCheck = Callable[[PreCheckContext], str | None]


@dataclass(frozen=True, kw_only=True)
class Job:
    """A registered unit of recurring work.

    `schedule` None means the deployment default (CRON_SCHEDULE). `pre_check`
    returns a reason to skip this instant, or None to run. `run_after` names jobs
    that must have succeeded for the same instant before this one starts.
    `timeout_s` interrupts a body that runs longer. `retries` re-runs a failed
    instant up to that many times, `retry_backoff_s` apart and doubling, jittered,
    never past the next instant. `transactional` hands the body a session whose
    transaction also records SUCCESS. `misfire_grace_s` is how late a missed
    instant may still run (None: one period; 0: never late).
    """

    name: str
    body: JobBody
    schedule: str | None = None
    pre_check: PreCheck | None = None
    run_after: tuple[str, ...] = ()
    description: str = field(default="")
    timeout_s: float | None = None
    retries: int = 0
    retry_backoff_s: float = 10.0
    transactional: bool = False
    misfire_grace_s: float | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name) or len(self.name) > MAX_NAME_LENGTH:
            raise InvalidJob(
                f"job name {self.name!r} is not kebab-case; use lower-case words joined by "
                f"dashes, at most {MAX_NAME_LENGTH} characters (e.g. 'sync-invoices')"
            )
        if self.name in self.run_after:
            raise InvalidJob(f"job {self.name!r} lists itself in run_after; remove it")
        for option, value in (
            ("timeout_s", self.timeout_s),
            ("retry_backoff_s", self.retry_backoff_s),
        ):
            if value is not None and not value > 0:
                raise InvalidJob(f"job {self.name!r}: {option}={value!r} must be positive")
        if self.retries < 0:
            raise InvalidJob(f"job {self.name!r}: retries={self.retries!r} cannot be negative")
        if self.misfire_grace_s is not None and self.misfire_grace_s < 0:
            raise InvalidJob(
                f"job {self.name!r}: misfire_grace_s={self.misfire_grace_s!r} cannot be negative"
            )


def job(
    name: str,
    *,
    schedule: str | None = None,
    pre_check: PreCheck | None = None,
    run_after: tuple[str, ...] | list[str] = (),
    description: str | None = None,
    timeout_s: float | None = None,
    retries: int = 0,
    retry_backoff_s: float = 10.0,
    transactional: bool = False,
    misfire_grace_s: float | None = None,
) -> Callable[[JobBody], Job]:
    """Decorate a body to define a job; the docstring's first line is the default description."""

    def define(body: JobBody) -> Job:
        doc = (body.__doc__ or "").strip().splitlines()
        return Job(
            name=name,
            body=body,
            schedule=schedule,
            pre_check=pre_check,
            run_after=tuple(run_after),
            description=description if description is not None else (doc[0] if doc else ""),
            timeout_s=timeout_s,
            retries=retries,
            retry_backoff_s=retry_backoff_s,
            transactional=transactional,
            misfire_grace_s=misfire_grace_s,
        )

    return define
