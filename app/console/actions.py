"""What the console does: run now, retry, pause and resume; each recorded under who asked.

Every action goes through the same store calls and the same claim as the CLI's,
so a run started here takes the job's lock and passes its pre-check like any
other, and a pause set here is honoured by every replica at its next claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.config import Settings, env_prefix
from app.console import schemas
from app.console.errors import ConsoleError
from app.console.service import ConsoleReads, field_errors
from app.core.claims import Claim, PreCheckFailed, Skip, Wait
from app.core.params import InvalidParams, validate_params
from app.core.redaction import scrub
from app.errors import UnknownJob
from app.runtime.manual import BackgroundRuns, NotRetryableError, retry_request, run_now_request
from app.store.facade import Store


class ConsoleActions:
    """The write side of the console."""

    def __init__(
        self, store: Store, reads: ConsoleReads, settings: Settings, background: BackgroundRuns
    ) -> None:
        self.store = store
        self.reads = reads
        self.settings = settings
        self.background = background

    def start_run(
        self, name: str, given: Mapping[str, Any], *, dry_run: bool, by: str
    ) -> tuple[int, schemas.RunStarted]:
        """Claim a run of `name` now; (202, started) or (200, skipped or failed at once)."""
        configured = self.reads.configured(name)
        if not configured.enabled:
            raise ConsoleError(
                409,
                f"job {name!r} is disabled by {env_prefix(name)}_ENABLED; enable it first "
                "(or run it from the CLI with --force)",
            )
        try:
            params = validate_params(name, configured.job.params, given)
        except InvalidParams as exc:
            raise ConsoleError(
                400, f"job {name!r} refused its parameters", field_errors(exc.fields)
            ) from None
        request = run_now_request(
            configured.job,
            self.settings,
            params=params,
            dry_run=dry_run,
            requested_by=by,
            wait_for_lock=False,
        )
        return _answer(name, self.background.claim_and_start(configured.job, request))

    def retry(self, run_id: int, *, by: str) -> tuple[int, schemas.RunStarted]:
        """Retry FAILED run `run_id` now, with its params and dry-run."""
        try:
            job, request = retry_request(
                self.store,
                self.reads.registry,
                self.settings,
                run_id,
                requested_by=by,
                wait_for_lock=False,
            )
        except NotRetryableError as exc:
            status = 404 if exc.message.startswith("no run has id") else 409
            raise ConsoleError(status, exc.message) from None
        except UnknownJob as exc:
            raise ConsoleError(409, exc.message) from None
        return _answer(job.name, self.background.claim_and_start(job, request))

    def pause(self, name: str, reason: str, *, by: str) -> schemas.Done:
        """Pause one job on every replica."""
        self.reads.configured(name)
        stored = scrub(reason, self.settings.secrets)
        self.store.pause_job(name, reason=stored, paused_by=by)
        return schemas.Done(message=f"{name} paused: {stored}")

    def resume(self, name: str) -> schemas.Done:
        """Resume one job."""
        self.reads.configured(name)
        was = self.store.resume_job(name)
        return schemas.Done(message=f"{name} resumed" if was else f"{name} was not paused")

    def pause_all(self, reason: str, *, by: str) -> schemas.Done:
        """Pause every job on every replica."""
        stored = scrub(reason, self.settings.secrets)
        self.store.pause_all(reason=stored, paused_by=by)
        return schemas.Done(message=f"all jobs paused: {stored}")

    def resume_all(self) -> schemas.Done:
        """Lift the pause of every job."""
        was = self.store.resume_all()
        return schemas.Done(message="all jobs resumed" if was else "jobs were not all paused")


def _answer(name: str, claimed: object) -> tuple[int, schemas.RunStarted]:
    """The HTTP answer to a claim: 202 started, 200 settled at once, 409 held."""
    if isinstance(claimed, Claim):
        return 202, schemas.RunStarted(run_id=claimed.run_id, job_name=name, status="RUNNING")
    if isinstance(claimed, PreCheckFailed):
        return 200, schemas.RunStarted(
            run_id=claimed.run_id, job_name=name, status="FAILURE", reason=claimed.error
        )
    if isinstance(claimed, Skip) and claimed.kind not in ("running", "handled"):
        # Paused, or the pre-check said no: the answer says why (a manual run's skip is
        # answered, not recorded, as with `cronlock run`).
        return 200, schemas.RunStarted(
            run_id=None, job_name=name, status="SKIPPED", reason=claimed.reason
        )
    if isinstance(claimed, Skip | Wait):
        raise ConsoleError(409, f"{name} is not run now: {claimed.reason}")
    raise ConsoleError(409, f"another run of {name} holds its lock; try again when it ends")
