"""The JSON API under /api: every job and instant, and the actions, for other systems.

Routes are typed by `app.console.schemas`, which is also where /api/openapi.json
comes from. Reads may need a read token (see `app.console.auth`); every mutation
needs `Authorization: Bearer <CONSOLE_TOKEN>` and records the token's label.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from app.console import schemas
from app.console.actions import ConsoleActions
from app.console.auth import Access, Caller
from app.console.service import MAX_PAGE, ConsoleReads

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorBody} for code in (400, 401, 403, 404, 409, 413, 415, 503)
}
JobName = Annotated[str, Path(max_length=200, description="the job's registered name")]
RunId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _reads(request: Request) -> ConsoleReads:
    reads: ConsoleReads = request.app.state.reads
    return reads


def _actions(request: Request) -> ConsoleActions:
    actions: ConsoleActions = request.app.state.actions
    return actions


def reader(request: Request) -> Caller:
    """Dependency: the caller may read."""
    access: Access = request.app.state.access
    return access.require_read(request)


def writer(request: Request) -> Caller:
    """Dependency: the caller may act."""
    access: Access = request.app.state.access
    return access.require_write(request)


Reads = Annotated[ConsoleReads, Depends(_reads)]
Actions = Annotated[ConsoleActions, Depends(_actions)]
Reader = Annotated[Caller, Depends(reader)]
Writer = Annotated[Caller, Depends(writer)]

router = APIRouter(prefix="/api", responses=_ERRORS)


@router.get("/jobs", response_model=schemas.JobList, tags=["jobs"])
def list_jobs(request: Request, reads: Reads, _: Reader) -> schemas.JobList:
    """Every job in run order: schedule, state, next instants, last runs, statistics."""
    access: Access = request.app.state.access
    return reads.job_list(read_only=access.read_only)


@router.get("/jobs/{name}", response_model=schemas.JobDetail, tags=["jobs"])
def get_job(name: JobName, reads: Reads, _: Reader) -> schemas.JobDetail:
    """One job, with the JSON Schema of its parameters."""
    return reads.job_detail(name)


@router.get("/jobs/{name}/runs", response_model=schemas.RunsPage, tags=["runs"])
def list_runs(
    name: JobName,
    reads: Reads,
    _: Reader,
    status: Annotated[str | None, Query(max_length=20, description="e.g. FAILURE")] = None,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="a run id: runs older than it")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> schemas.RunsPage:
    """A job's runs, newest first, a page at a time (keyset: pass `next_before` on)."""
    return reads.runs(name, status=status, before=before, limit=limit)


@router.get("/jobs/{name}/instants", response_model=schemas.Timeline, tags=["runs"])
def list_instants(
    name: JobName,
    reads: Reads,
    _: Reader,
    start: Annotated[datetime | None, Query(alias="from", description="default: a day ago")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="default: now")] = None,
) -> schemas.Timeline:
    """Each scheduled instant in (from, to] and its outcome: the run's status, `not_yet`,
    or `unaccounted` (past, and no run recorded)."""
    return reads.timeline(name, start=start, end=end)


@router.get("/runs/{run_id}", response_model=schemas.RunView, tags=["runs"])
def get_run(run_id: RunId, reads: Reads, _: Reader) -> schemas.RunView:
    """One run: outcome, error, result, params, who asked for it."""
    return reads.run(run_id)


@router.post(
    "/jobs/{name}/runs",
    response_model=schemas.RunStarted,
    status_code=202,
    tags=["actions"],
    responses={200: {"model": schemas.RunStarted, "description": "skipped or failed at once"}},
)
def start_run(
    name: JobName,
    actions: Actions,
    caller: Writer,
    body: schemas.RunRequest | None = None,
) -> JSONResponse:
    """Run the job now, through its lock and pre-check: 202 with the run id while it
    runs in the background; 400 for refused params; 409 when another run holds the lock."""
    given = body or schemas.RunRequest()
    status, started = actions.start_run(
        name, given.params, dry_run=given.dry_run, by=caller.requested_by
    )
    return JSONResponse(started.model_dump(mode="json"), status_code=status)


@router.post(
    "/runs/{run_id}/retry",
    response_model=schemas.RunStarted,
    status_code=202,
    tags=["actions"],
    responses={200: {"model": schemas.RunStarted, "description": "skipped or failed at once"}},
)
def retry_run(run_id: RunId, actions: Actions, caller: Writer) -> JSONResponse:
    """Retry a FAILED run now, as its instant's next attempt, with the same params."""
    status, started = actions.retry(run_id, by=caller.requested_by)
    return JSONResponse(started.model_dump(mode="json"), status_code=status)


@router.post("/jobs/{name}/pause", response_model=schemas.Done, tags=["actions"])
def pause_job(
    name: JobName, body: schemas.PauseRequest, actions: Actions, caller: Writer
) -> schemas.Done:
    """Pause the job on every replica; its instants are recorded SKIPPED with the reason."""
    return actions.pause(name, body.reason, by=caller.requested_by)


@router.post("/jobs/{name}/resume", response_model=schemas.Done, tags=["actions"])
def resume_job(name: JobName, actions: Actions, _: Writer) -> schemas.Done:
    """Resume the job."""
    return actions.resume(name)


@router.post("/pause-all", response_model=schemas.Done, tags=["actions"])
def pause_all(body: schemas.PauseRequest, actions: Actions, caller: Writer) -> schemas.Done:
    """Pause every job on every replica."""
    return actions.pause_all(body.reason, by=caller.requested_by)


@router.post("/resume-all", response_model=schemas.Done, tags=["actions"])
def resume_all(actions: Actions, _: Writer) -> schemas.Done:
    """Lift the pause of every job."""
    return actions.resume_all()
