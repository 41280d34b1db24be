"""`http_job(...)`: a job whose body calls a service's endpoint, declared, not written.

The result is an ordinary `Job`: registered in `JOBS` (or listed in JOBS_FILE), it
goes through the same lock, pre-check, enable flag, outcome ledger and retries as
any other. Its options are checked here, where it is defined.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.core.job import Job, PreCheck
from app.errors import InvalidJob, shown
from app.http_jobs.running import call_target
from app.http_jobs.target import DEFAULT_TIMEOUT_S, HttpTarget, check_target
from app.runtime.context import RunContext


@dataclass(frozen=True, eq=False)  # compared and hashed by identity, as a function is
class HttpCall:
    """The body of an HTTP job: its target, called once per run."""

    job_name: str
    target: HttpTarget

    def __call__(self, ctx: RunContext) -> dict[str, Any]:
        """Call the target for this run; the run's result."""
        return call_target(ctx, self.target)

    def check_settings(self, settings: Settings) -> None:
        """The job's URL variable and the M2M client, checked when the job is configured."""
        self.target.check_settings(settings, self.job_name)


def http_job(
    name: str,
    *,
    url_env: str,
    path: str,
    method: str = "POST",
    schedule: str | None = None,
    audience: str | None = None,
    scopes: Sequence[str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    max_attempts: int = 4,
    attempt_backoff_s: float = 1.0,
    pre_check: PreCheck | None = None,
    run_after: Sequence[str] = (),
    retries: int = 0,
    retry_backoff_s: float = 10.0,
    misfire_grace_s: float | None = None,
    run_at_start: bool = False,
    description: str | None = None,
) -> Job:
    """Define a job that calls `method` `$url_env` + `path` with an M2M token at each run.

    `timeout_s` bounds the whole call (retries included) and is the job's timeout.
    The other options are `@job`'s.
    """
    for option, value in (("scopes", scopes), ("run_after", run_after)):
        if value is not None and (isinstance(value, str) or not isinstance(value, Sequence)):
            raise InvalidJob(f"job {name!r}: {option}={shown(value)} must be a list of names")
    target = HttpTarget(
        method=method.upper() if isinstance(method, str) else method,
        url_env=url_env,
        path=path,
        audience=audience,
        scopes=None if scopes is None else tuple(scopes),
        body=body,
        headers=dict(headers or {}) if isinstance(headers, Mapping | None) else headers,
        timeout_s=timeout_s,
        max_attempts=max_attempts,
        attempt_backoff_s=attempt_backoff_s,
    )
    check_target(name, target)
    call = HttpCall(name, target)
    return Job(
        name=name,
        body=call,
        schedule=schedule,
        pre_check=pre_check,
        run_after=tuple(run_after),
        description=description if description is not None else target.shown,
        timeout_s=timeout_s,
        retries=retries,
        retry_backoff_s=retry_backoff_s,
        misfire_grace_s=misfire_grace_s,
        run_at_start=run_at_start,
        check_settings=call.check_settings,
    )
