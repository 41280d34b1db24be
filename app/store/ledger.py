"""The reads behind the console and its API: statistics, pages of runs, a job's instants.

Each is sized to stay fast on a table of millions of runs: statistics read the
per-day counts (a few rows per job, added up in the database), pages of runs walk
(job_name, id) from a cursor, and a range of instants reads the (job_name,
scheduled_for, attempt) unique index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, Integer, Text, bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY

from app.core.outcomes import RunStatus, Trigger
from app.core.stats import DayCounts, RunStats, summarize
from app.store.database import Database
from app.store.history import RUN_COLUMNS, RunRecord, latest_runs
from app.store.models import JobDayCounts, JobExecution, JobRow

_TODAY_UTC = func.timezone("UTC", func.now()).cast(JobDayCounts.day.type)


# Per job over the window: its days' counts added up, and their duration histograms
# merged bucket by bucket. Adding them up here returns a row per job where the days
# would be thousands of JSON documents for Python to parse and merge.
_RUN_STATS = text(
    """
    WITH in_window AS (
        SELECT * FROM job_day_counts
        WHERE day > timezone('UTC', now())::date - :days
          AND (CAST(:names AS text[]) IS NULL OR job_name = ANY(CAST(:names AS text[])))
    ),
    buckets AS (
        SELECT w.job_name, d.key AS bucket, sum(d.value::integer) AS n
        FROM in_window w CROSS JOIN LATERAL jsonb_each_text(w.durations) AS d
        GROUP BY 1, 2
    ),
    histograms AS (
        SELECT job_name, jsonb_object_agg(bucket, n) AS durations FROM buckets GROUP BY 1
    )
    SELECT t.job_name, t.runs, t.failures, t.skipped, t.missed, t.duration_ms_sum,
           coalesce(h.durations, '{}'::jsonb) AS durations
    FROM (
        SELECT job_name, sum(runs) AS runs, sum(failures) AS failures,
               sum(skipped) AS skipped, sum(missed) AS missed,
               sum(duration_ms_sum) AS duration_ms_sum
        FROM in_window GROUP BY job_name
    ) t
    LEFT JOIN histograms h USING (job_name)
    """
).bindparams(bindparam("days", type_=Integer), bindparam("names", type_=ARRAY(Text)))


def run_stats(
    database: Database, *, days: int, names: Sequence[str] | None = None
) -> dict[str, RunStats]:
    """Per job (every job, or those `names`), over the last `days` UTC days (today
    included): counts, average, p95."""
    with database.transaction() as session:
        return {
            row.job_name: summarize(
                [
                    DayCounts(
                        runs=int(row.runs),
                        failures=int(row.failures),
                        skipped=int(row.skipped),
                        missed=int(row.missed),
                        duration_ms_sum=float(row.duration_ms_sum),
                        durations={int(bucket): int(n) for bucket, n in row.durations.items()},
                    )
                ]
            )
            for row in session.execute(
                _RUN_STATS, {"days": days, "names": None if names is None else list(names)}
            )
        }


def prune_day_counts(database: Database, *, days: int) -> int:
    """Delete the per-day counts older than the retention window; the rows deleted."""
    with database.transaction() as session:
        deleted = session.execute(delete(JobDayCounts).where(JobDayCounts.day <= _TODAY_UTC - days))
        return int(getattr(deleted, "rowcount", 0) or 0)


def last_successes(database: Database, names: Sequence[str]) -> dict[str, RunRecord]:
    """Each named job's latest SUCCESS (one probe of the one-success-per-instant index)."""
    return latest_runs(database, names, JobExecution.status == RunStatus.SUCCESS)


def runs_page(
    database: Database,
    job_name: str,
    *,
    status: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[RunRecord]:
    """A job's runs newest first, those with an id below `before` (the keyset cursor)."""
    query = (
        select(*RUN_COLUMNS)
        .where(JobExecution.job_name == job_name)
        .order_by(JobExecution.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(JobExecution.status == status)
    if before is not None:
        query = query.where(JobExecution.id < before)
    with database.transaction() as session:
        return [RunRecord(*row) for row in session.execute(query)]


@dataclass(frozen=True)
class InstantRuns:
    """A scheduled instant's latest attempt, and how many attempts it had."""

    latest: RunRecord
    attempts: int


def instant_runs(
    database: Database, job_name: str, *, after: datetime, until: datetime
) -> dict[datetime, InstantRuns]:
    """The scheduled runs of a job's instants in (after, until], by instant."""
    attempts = func.count().over(partition_by=JobExecution.scheduled_for)
    newest = func.row_number().over(
        partition_by=JobExecution.scheduled_for, order_by=JobExecution.attempt.desc()
    )
    ranked = (
        select(*RUN_COLUMNS, attempts.label("attempts"), newest.label("newest"))
        .where(
            JobExecution.job_name == job_name,
            JobExecution.trigger == Trigger.SCHEDULE,
            JobExecution.scheduled_for > after,
            JobExecution.scheduled_for <= until,
        )
        .subquery()
    )
    fields = list(RunRecord.__dataclass_fields__)
    query = select(*[ranked.c[name] for name in fields], ranked.c.attempts).where(
        ranked.c.newest == 1
    )
    found: dict[datetime, InstantRuns] = {}
    with database.transaction() as session:
        for row in session.execute(query):
            record = RunRecord(*row[: len(fields)])
            found[record.scheduled_for] = InstantRuns(record, int(row.attempts))
    return found


def job_registered_at(database: Database, names: Sequence[str]) -> dict[str, datetime]:
    """When each named job's lock row was created (its first registration)."""
    with database.transaction() as session:
        rows = session.execute(
            select(JobRow.name, JobRow.created_at).where(JobRow.name.in_(list(names)))
        )
        return {row.name: row.created_at for row in rows}


_RECENT = text(
    """
    SELECT r.job_name, r.scheduled_for, r.status
    FROM unnest(:names, :lowers) AS w(name, lower_bound)
    CROSS JOIN LATERAL (
        SELECT DISTINCT ON (e.scheduled_for) e.job_name, e.scheduled_for, e.status
        FROM job_execution e
        WHERE e.job_name = w.name AND e.trigger = 'schedule'
          AND e.scheduled_for >= w.lower_bound
        ORDER BY e.scheduled_for DESC, e.attempt DESC
        LIMIT :per_job
    ) r
    """
).bindparams(
    bindparam("names", type_=ARRAY(Text)),
    bindparam("lowers", type_=ARRAY(DateTime(timezone=True))),
)


def recent_outcomes(
    database: Database, lower_bounds: Mapping[str, datetime], *, per_job: int
) -> dict[tuple[str, datetime], str]:
    """The latest attempt's status of each job's scheduled instants from its lower bound
    on (at most `per_job` instants each), by (job, instant): one statement for all jobs."""
    if not lower_bounds:
        return {}
    names = list(lower_bounds)
    with database.transaction() as session:
        rows = session.execute(
            _RECENT,
            {"names": names, "lowers": [lower_bounds[n] for n in names], "per_job": per_job},
        )
        return {(row.job_name, row.scheduled_for): row.status for row in rows}


def attempts_of(database: Database, job_name: str, scheduled_for: datetime) -> list[RunRecord]:
    """Every run of one (job, instant), first attempt first."""
    query = (
        select(*RUN_COLUMNS)
        .where(JobExecution.job_name == job_name, JobExecution.scheduled_for == scheduled_for)
        .order_by(JobExecution.attempt, JobExecution.id)
    )
    with database.transaction() as session:
        return [RunRecord(*row) for row in session.execute(query)]
