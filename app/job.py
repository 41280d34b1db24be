"""What a job is: a named body with its schedule and options, and what it is handed when it runs."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database
from app.errors import InvalidJob

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

    def session(self) -> Session:
        """A new session on cronlock's database, for jobs whose work lives there."""
        return self.database.session()


JobResult = Mapping[str, Any] | None
JobBody = Callable[[RunContext], JobResult]
PreCheck = Callable[[PreCheckContext], str | None]


@dataclass(frozen=True, kw_only=True)
class Job:
    """A registered unit of recurring work.

    `schedule` None means the deployment default (CRON_SCHEDULE). `pre_check`
    returns a reason to skip this instant, or None to run. `run_after` names jobs
    that must have succeeded for the same instant before this one starts.
    """

    name: str
    body: JobBody
    schedule: str | None = None
    pre_check: PreCheck | None = None
    run_after: tuple[str, ...] = ()
    description: str = field(default="")

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name) or len(self.name) > MAX_NAME_LENGTH:
            raise InvalidJob(
                f"job name {self.name!r} is not kebab-case; use lower-case words joined by "
                f"dashes, at most {MAX_NAME_LENGTH} characters (e.g. 'sync-invoices')"
            )
        if self.name in self.run_after:
            raise InvalidJob(f"job {self.name!r} lists itself in run_after; remove it")


def job(
    name: str,
    *,
    schedule: str | None = None,
    pre_check: PreCheck | None = None,
    run_after: tuple[str, ...] | list[str] = (),
    description: str | None = None,
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
        )

    return define
