"""What the console shows and does, built on the run ledger; shared by the API and the pages.

Reads ask the store a fixed number of questions per page (never one per job),
so the overview of 200 jobs costs the same handful of queries as that of two.
Nothing here runs between requests: a console nobody looks at costs the database
nothing. Each job's instants around now (its last ones and its next) are kept from
one request to the next and walked on only past the ones that have come: listing
them afresh through croniter, 33 steps for each job, costs the overview of 200
jobs several times what all its queries do.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from app.config import Settings
from app.console import schemas
from app.console.errors import ConsoleError
from app.core.job import ConfiguredJob
from app.core.outcomes import RunStatus
from app.core.schedule import Schedule
from app.core.stats import RunStats
from app.registry import JobRegistry
from app.runtime.worker import utc_now
from app.store.control import Pause
from app.store.facade import Store
from app.store.history import RunRecord
from app.store.ledger import InstantRuns

NEXT_INSTANTS = 3
RECENT_INSTANTS = 30
MAX_TIMELINE_INSTANTS = 10_000
MAX_PAGE = 200
# The times a range of instants may name: schedule arithmetic fails past year 9999,
# and a range without `from` starts a day before its `to`.
EARLIEST_BOUND = datetime(1970, 1, 2, tzinfo=UTC)
LATEST_BOUND = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Around:
    """A job's instants around the moment `at`: the last RECENT_INSTANTS at or before it,
    oldest first, and the NEXT_INSTANTS after it. They hold for any later moment before
    `upcoming[0]`."""

    at: datetime
    recent: tuple[datetime, ...]
    upcoming: tuple[datetime, ...]


def instants_around(schedule: Schedule, now: datetime, known: Around | None = None) -> Around:
    """The instants around `now`: `known` itself while none of its instants has passed,
    `known` walked on from its last instant when some have, else listed afresh."""
    if known is not None and known.upcoming and known.at <= now:
        if now < known.upcoming[0]:
            return known
        moments = [*known.recent, *known.upcoming]
        walk = schedule.walk(moments[-1], forward=True)
        # Walk on a few steps; after a long pause, listing afresh takes fewer.
        for _ in range(RECENT_INSTANTS + NEXT_INSTANTS):
            ahead = sum(moment > now for moment in moments[-NEXT_INSTANTS:])
            if ahead == NEXT_INSTANTS:
                past = [moment for moment in moments if moment <= now]
                return Around(now, tuple(past[-RECENT_INSTANTS:]), tuple(moments[-ahead:]))
            moments.append(next(walk))
    return Around(
        now,
        tuple(itertools.islice(schedule.walk(now, forward=False), RECENT_INSTANTS))[::-1],
        tuple(itertools.islice(schedule.walk(now, forward=True), NEXT_INSTANTS)),
    )


def run_view(run: RunRecord) -> schemas.RunView:
    """A ledger row as the API shows it."""
    took = run.duration_s
    return schemas.RunView(
        id=run.id,
        job_name=run.job_name,
        status=run.status,
        scheduled_for=run.scheduled_for,
        trigger=run.trigger,
        attempt=run.attempt,
        started_at=run.started_at,
        completed_at=run.completed_at,
        duration_ms=None if took is None else round(took * 1000, 1),
        worker_id=run.worker_id,
        error=run.error_message,
        result=run.result,
        params=run.params,
        dry_run=run.dry_run,
        requested_by=run.requested_by,
    )


def _pause_view(pause: Pause | None, *, all_jobs: bool) -> schemas.Pause | None:
    if pause is None:
        return None
    return schemas.Pause(
        reason=pause.reason, by=pause.paused_by, since=pause.paused_at, all_jobs=all_jobs
    )


def _stats_view(stats: RunStats, days: int) -> schemas.Stats:
    return schemas.Stats(
        window_days=days,
        runs=stats.runs,
        failures=stats.failures,
        skipped=stats.skipped,
        missed=stats.missed,
        average_ms=None if stats.average_ms is None else round(stats.average_ms, 1),
        p95_ms=None if stats.p95_ms is None else round(stats.p95_ms, 1),
    )


class ConsoleReads:
    """The read side: jobs, runs, instants."""

    def __init__(
        self, store: Store, registry: JobRegistry, jobs: Sequence[ConfiguredJob], settings: Settings
    ) -> None:
        self.store = store
        self.registry = registry
        self.jobs = list(jobs)
        self.by_name = {configured.name: configured for configured in self.jobs}
        self.settings = settings
        # By job: replaced whole, never changed in place, so concurrent requests
        # at worst both walk the same steps.
        self._around: dict[str, Around] = {}

    def configured(self, name: str) -> ConfiguredJob:
        """The job called `name`, or a 404."""
        found = self.by_name.get(name)
        if found is None:
            raise ConsoleError(404, f"no job is called {name!r}; GET /api/jobs lists them")
        return found

    def job_list(self, *, read_only: bool) -> schemas.JobList:
        """Every job, in run order, with its state, next instants and record."""
        everything, views = self._job_views(self.jobs)
        return schemas.JobList(
            jobs=views, paused_all=_pause_view(everything, all_jobs=True), read_only=read_only
        )

    def job_detail(self, name: str) -> schemas.JobDetail:
        """One job, with its parameters' schema."""
        configured = self.configured(name)
        _, (view,) = self._job_views([configured])
        model = configured.job.params
        return schemas.JobDetail(
            **view.model_dump(),
            params_schema=None if model is None else model.model_json_schema(),
            timeout_s=configured.job.timeout_s,
            retries=configured.job.retries,
            transactional=configured.job.transactional,
        )

    def _job_views(
        self, jobs: Sequence[ConfiguredJob]
    ) -> tuple[Pause | None, list[schemas.JobView]]:
        names = [configured.name for configured in jobs]
        now = utc_now()
        days = self.settings.history_retention_days
        everything, paused = self.store.pauses()
        last = self.store.last_runs(names)
        successes = self.store.last_successes(names)
        streaks = self.store.streaks(names)
        stats = self.store.job_stats(days=days, names=names)
        around = self._instants(jobs, now)
        recent = self._recent(around, now)
        views = []
        for configured in jobs:
            name = configured.name
            job_pause = _pause_view(paused.get(name), all_jobs=False)
            streak = streaks.get(name)
            views.append(
                schemas.JobView(
                    name=name,
                    description=configured.job.description,
                    schedule=configured.schedule.expression,
                    time_zone=self.settings.cron_tz.key,
                    enabled=configured.enabled,
                    manual_only=configured.job.manual_only,
                    paused=job_pause or _pause_view(everything, all_jobs=True),
                    next_instants=list(around[name].upcoming) if name in around else [],
                    last_run=run_view(last[name]) if name in last else None,
                    last_success=run_view(successes[name]) if name in successes else None,
                    failures_in_a_row=streak.failures if streak else 0,
                    stats=_stats_view(stats.get(name, RunStats()), days),
                    recent=recent.get(name, []),
                )
            )
        return everything, views

    def _instants(self, jobs: Sequence[ConfiguredJob], now: datetime) -> dict[str, Around]:
        """Each scheduled job's instants around now (none for a job run only by hand)."""
        found = {}
        for configured in jobs:
            if configured.job.manual_only:
                continue
            known = self._around.get(configured.name)
            found[configured.name] = instants_around(configured.schedule, now, known)
            self._around[configured.name] = found[configured.name]
        return found

    def _recent(
        self, around: Mapping[str, Around], now: datetime
    ) -> dict[str, list[schemas.InstantState]]:
        """The outcome of each job's last RECENT_INSTANTS instants (up to now), oldest first."""
        instants = {name: list(known.recent) for name, known in around.items()}
        registered = self.store.registered_at(list(instants))
        outcomes = self.store.recent_outcomes(
            {name: moments[0] for name, moments in instants.items() if moments},
            per_job=RECENT_INSTANTS,
        )
        return {
            name: [
                _state(outcomes.get((name, moment)), moment, now)
                for moment in moments
                if moment >= registered.get(name, moment)
            ]
            for name, moments in instants.items()
        }

    def runs(
        self, name: str, *, status: str | None, before: int | None, limit: int
    ) -> schemas.RunsPage:
        """A page of a job's runs, newest first."""
        self.configured(name)
        if status is not None and status not in RunStatus.__members__:
            raise ConsoleError(
                400,
                f"status={status!r} is not a status; use one of {', '.join(RunStatus.__members__)}",
            )
        page = self.store.runs_page(name, status=status, before=before, limit=limit + 1)
        more = len(page) > limit
        shown = page[:limit]
        return schemas.RunsPage(
            runs=[run_view(run) for run in shown],
            next_before=shown[-1].id if more and shown else None,
        )

    def run(self, run_id: int) -> schemas.RunView:
        """One run, or a 404."""
        found = self.store.get_run(run_id)
        if found is None:
            raise ConsoleError(404, f"no run has id {run_id}")
        return run_view(found)

    def attempts_of(self, run: schemas.RunView) -> list[schemas.RunView]:
        """Every run of `run`'s (job, instant), first attempt first."""
        return [run_view(r) for r in self.store.attempts_of(run.job_name, run.scheduled_for)]

    def timeline(
        self, name: str, *, start: datetime | None, end: datetime | None
    ) -> schemas.Timeline:
        """The job's scheduled instants in (start, end] and what became of each.

        Defaults to the last day. Instants before the job was first registered are
        not shown (it did not exist); instants to come are `not_yet`; past ones with
        no run are `unaccounted`, which a healthy deployment never shows for long.
        """
        configured = self.configured(name)
        now = utc_now()
        end = _bound("to", end) if end is not None else now
        start = _bound("from", start) if start is not None else end - timedelta(days=1)
        if start >= end:
            raise ConsoleError(400, "`from` must be before `to`")
        moments: list[datetime] = []
        if not configured.job.manual_only:
            registered = self.store.registered_at([name]).get(name, start)
            walk = configured.schedule.walk(max(start, registered), forward=True)
            for moment in walk:
                if moment > end or len(moments) > MAX_TIMELINE_INSTANTS:
                    break
                moments.append(moment)
        truncated = len(moments) > MAX_TIMELINE_INSTANTS
        moments = moments[:MAX_TIMELINE_INSTANTS]
        runs = self.store.instant_runs(name, after=start, until=moments[-1]) if moments else {}
        instants = [_instant(moment, runs.get(moment), now) for moment in moments]
        return schemas.Timeline(
            job_name=name, range_from=start, range_to=end, instants=instants, truncated=truncated
        )


def _instant(moment: datetime, found: InstantRuns | None, now: datetime) -> schemas.Instant:
    """One instant of the timeline: its latest attempt's outcome, or what its absence means."""
    if found is None:
        return schemas.Instant(scheduled_for=moment, state=_state(None, moment, now))
    view = run_view(found.latest)
    return schemas.Instant(
        scheduled_for=moment,
        state=_state(view.status, moment, now),
        run_id=view.id,
        attempts=found.attempts,
        duration_ms=view.duration_ms,
        error=view.error,
    )


def _state(status: str | None, moment: datetime, now: datetime) -> schemas.InstantState:
    if status is not None:
        return cast(schemas.InstantState, status)
    return "not_yet" if moment > now else "unaccounted"


def _bound(name: str, moment: datetime) -> datetime:
    """A range's bound in UTC (a time without a zone is read as UTC), or a 400 when it
    is out of the times a range may name."""
    try:
        aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # within a day of year 1 or 9999, in another zone
        aware = None
    if aware is None or not EARLIEST_BOUND <= aware <= LATEST_BOUND:
        message = f"`{name}` must be between {EARLIEST_BOUND:%Y-%m-%d} and {LATEST_BOUND:%Y-%m-%d}"
        raise ConsoleError(
            400,
            message,
            [schemas.FieldError(field=name, value=moment.isoformat(), message=message)],
        )
    return aware


def field_errors(problems: Sequence[Any]) -> list[schemas.FieldError]:
    """Refused parameters as the API reports them."""
    return [schemas.FieldError(field=p.field, value=p.given, message=p.message) for p in problems]
