"""What a job is: a named body with its schedule and options (checked when defined)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.core.schedule import Schedule
from app.errors import InvalidJob

if TYPE_CHECKING:  # what a body and a pre-check are handed, made by the runtime
    from app.runtime.context import PreCheckContext, RunContext

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
MAX_NAME_LENGTH = 63


JobResult = Mapping[str, Any] | None
JobBody = Callable[["RunContext"], JobResult]
PreCheck = Callable[["PreCheckContext"], str | None]


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


@dataclass(frozen=True)
class ConfiguredJob:
    """A job with this deployment's schedule and enable flag applied."""

    job: Job
    schedule: Schedule
    enabled: bool

    @property
    def name(self) -> str:
        """The job's name."""
        return self.job.name


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
