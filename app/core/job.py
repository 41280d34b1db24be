"""What a job is: a named body with its schedule and options (checked when defined)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from app.core.params import requires_params
from app.core.schedule import Schedule
from app.errors import InvalidJob, shown

if TYPE_CHECKING:  # what a body and a pre-check are handed, made by the runtime
    from app.config import Settings
    from app.runtime.context import PreCheckContext, RunContext

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
MAX_NAME_LENGTH = 63
MAX_TIMEOUT_S = 30 * 86_400  # a month: longer is a typo, and past what the alarm can hold
MAX_RETRY_BACKOFF_S = 366 * 86_400  # a yearly job may wait weeks; never past its next instant
MAX_MISFIRE_GRACE_S = 366 * 86_400  # the longest period a schedule may have
MAX_RETRIES = 100


JobResult = Mapping[str, Any] | None
JobBody = Callable[["RunContext"], JobResult]
PreCheck = Callable[["PreCheckContext"], str | None]
SettingsCheck = Callable[["Settings"], None]


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
    instant may still run (None: one period; 0: never late). `run_at_start`: when a
    worker starts, the latest instant runs if no replica has run it yet (so `every
    5m` runs at once, then every five minutes; once across replicas starting together).
    `params`: a pydantic model of the parameters a run by hand may give; scheduled
    runs use its defaults, and a model with required fields makes the job manual-only.
    `check_settings` is called with the deployment's settings when an enabled job is
    configured, and raises ConfigError for what the job needs and the environment
    lacks (an HTTP job's URL variable), so startup fails rather than a run.
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
    run_at_start: bool = False
    params: type[BaseModel] | None = None
    check_settings: SettingsCheck | None = field(default=None, repr=False)

    @property
    def manual_only(self) -> bool:
        """A job whose parameters have no defaults runs only by hand, never scheduled."""
        return requires_params(self.params)

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_types(self)
        if self.name in self.run_after:
            raise InvalidJob(f"job {self.name!r} lists itself in run_after; remove it")
        for option, value, maximum in (
            ("timeout_s", self.timeout_s, MAX_TIMEOUT_S),
            ("retry_backoff_s", self.retry_backoff_s, MAX_RETRY_BACKOFF_S),
            ("misfire_grace_s", self.misfire_grace_s, MAX_MISFIRE_GRACE_S),
        ):
            lowest = 0 if option == "misfire_grace_s" else None
            _check_seconds(self.name, option, value, maximum, lowest=lowest)
        if not 0 <= self.retries <= MAX_RETRIES:
            raise InvalidJob(
                f"job {self.name!r}: retries={self.retries!r} must be between 0 and {MAX_RETRIES}"
            )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise InvalidJob(
            f"job name {shown(name)} is not kebab-case; use lower-case words joined by "
            f"dashes, at most {MAX_NAME_LENGTH} characters (e.g. 'sync-invoices')"
        )


def _check_types(job: Job) -> None:
    """Options of the wrong type, refused where the job is defined rather than when it runs."""
    problems = []
    if not callable(job.body):
        problems.append(f"body={shown(job.body)} is not callable; decorate a function")
    if job.schedule is not None and not isinstance(job.schedule, str):
        problems.append(f"schedule={shown(job.schedule)} is not a string (e.g. '0 * * * *')")
    if job.pre_check is not None and not callable(job.pre_check):
        problems.append(f"pre_check={shown(job.pre_check)} is not callable; pass a function")
    if job.check_settings is not None and not callable(job.check_settings):
        problems.append(f"check_settings={shown(job.check_settings)} is not callable")
    if isinstance(job.run_after, str) or not all(isinstance(n, str) for n in job.run_after):
        problems.append(f"run_after={shown(job.run_after)} must name jobs (strings)")
    if not isinstance(job.description, str):
        problems.append(f"description={shown(job.description)} is not a string")
    if isinstance(job.retries, bool) or not isinstance(job.retries, int):
        problems.append(f"retries={shown(job.retries)} is not a whole number")
    if job.params is not None and not (
        isinstance(job.params, type) and issubclass(job.params, BaseModel)
    ):
        problems.append(f"params={shown(job.params)} is not a pydantic model class")
    for option in ("transactional", "run_at_start"):
        if not isinstance(getattr(job, option), bool):
            problems.append(f"{option}={shown(getattr(job, option))} is not True or False")
    if problems:
        raise InvalidJob(f"job {job.name!r}: " + "; ".join(problems))


def _check_seconds(
    name: str, option: str, value: object, maximum: float, *, lowest: float | None
) -> None:
    """A duration option: a finite number of seconds, positive (or >= `lowest`), capped."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJob(f"job {name!r}: {option}={shown(value)} is not a number of seconds")
    too_low = value < lowest if lowest is not None else not value > 0
    if too_low or not value <= maximum:  # NaN fails both
        bound = "positive" if lowest is None else f"at least {lowest:g}"
        raise InvalidJob(
            f"job {name!r}: {option}={value!r} must be {bound} and at most {maximum:.0f} seconds"
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
    run_at_start: bool = False,
    params: type[BaseModel] | None = None,
) -> Callable[[JobBody], Job]:
    """Decorate a body to define a job; the docstring's first line is the default description."""

    def define(body: JobBody) -> Job:
        doc = (body.__doc__ or "").strip().splitlines()
        return Job(
            name=name,
            body=body,
            schedule=schedule,
            pre_check=pre_check,
            run_after=run_after if isinstance(run_after, str) else tuple(run_after),
            description=description if description is not None else (doc[0] if doc else ""),
            timeout_s=timeout_s,
            retries=retries,
            retry_backoff_s=retry_backoff_s,
            transactional=transactional,
            misfire_grace_s=misfire_grace_s,
            run_at_start=run_at_start,
            params=params,
        )

    return define
