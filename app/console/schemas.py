"""What the console's API answers and accepts, as pydantic models.

The same models type the routes, validate request bodies and generate the
OpenAPI document served at /api/openapi.json.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_REASON_CHARS = 500

InstantState = Literal[
    "SUCCESS", "FAILURE", "SKIPPED", "MISSED", "RUNNING", "not_yet", "unaccounted"
]


class Strict(BaseModel):
    """A request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class RunView(BaseModel):
    """One run of the ledger."""

    id: int
    job_name: str
    status: str
    scheduled_for: datetime
    trigger: str
    attempt: int
    started_at: datetime
    completed_at: datetime | None
    duration_ms: float | None = Field(description="start to outcome; null while running")
    worker_id: str
    error: str | None
    result: dict[str, Any] | None
    params: dict[str, Any] | None
    dry_run: bool
    requested_by: str | None


class Stats(BaseModel):
    """A job's outcomes over the retention window (UTC days, today included)."""

    window_days: int
    runs: int = Field(description="runs that ran: SUCCESS or FAILURE")
    failures: int
    skipped: int
    missed: int
    average_ms: float | None
    p95_ms: float | None = Field(description="approximate: within about 4.5%")


class Pause(BaseModel):
    """Why and by whom a job (or every job) is paused."""

    reason: str
    by: str
    since: datetime
    all_jobs: bool = Field(description="true when this is `pause --all`")


class JobView(BaseModel):
    """A job with its schedule, state and recent record."""

    name: str
    description: str | None
    schedule: str
    time_zone: str
    enabled: bool
    manual_only: bool
    paused: Pause | None
    next_instants: list[datetime]
    last_run: RunView | None
    last_success: RunView | None
    failures_in_a_row: int
    stats: Stats
    recent: list[InstantState] = Field(
        description="the outcomes of the last instants, oldest first (the overview's strip)"
    )


class JobDetail(JobView):
    """A job, with what a manual run of it accepts."""

    params_schema: dict[str, Any] | None = Field(
        description="JSON Schema of the job's parameters; null when it takes none"
    )
    timeout_s: float | None
    retries: int
    transactional: bool


class JobList(BaseModel):
    """Every registered job, in run order."""

    jobs: list[JobView]
    paused_all: Pause | None
    read_only: bool = Field(description="true when no CONSOLE_TOKEN is set: no action is taken")


class RunsPage(BaseModel):
    """A page of a job's runs, newest first."""

    runs: list[RunView]
    next_before: int | None = Field(
        description="pass as `before` for the next page; null on the last page"
    )


class Instant(BaseModel):
    """One scheduled instant and what became of it."""

    scheduled_for: datetime
    state: InstantState
    run_id: int | None = None
    attempts: int = 0
    duration_ms: float | None = None
    error: str | None = None


class Timeline(BaseModel):
    """A job's scheduled instants in a range, each with its outcome."""

    job_name: str
    range_from: datetime = Field(serialization_alias="from")
    range_to: datetime = Field(serialization_alias="to")
    instants: list[Instant]
    truncated: bool = Field(description="true when the range held more instants than shown")


class RunRequest(Strict):
    """A manual run: its parameters (checked against the job's model) and dry-run flag."""

    params: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = False


class RunStarted(BaseModel):
    """The answer to a run request."""

    run_id: int | None
    job_name: str
    status: str = Field(description="RUNNING when started; SKIPPED or FAILURE when not")
    reason: str | None = None


class PauseRequest(Strict):
    """A pause and why."""

    # Not only blanks, as the CLI and the pages require: it is shown on every skipped run.
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS, pattern=r"\S")


class Done(BaseModel):
    """An action's answer."""

    ok: bool = True
    message: str


class FieldError(BaseModel):
    """One bad field of a request."""

    field: str
    value: Any = None
    message: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    error: str
    fields: list[FieldError] = Field(default_factory=list)
