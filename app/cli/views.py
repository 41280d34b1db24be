"""Commands that read: jobs, history, the next instants."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime
from typing import Any

from app.cli.common import (
    EXIT_OK,
    Deployment,
    fmt_time,
    ready_store,
    table,
)
from app.config import Settings
from app.core.display import cut
from app.core.job import ConfiguredJob
from app.core.stats import RunStats
from app.errors import UnknownJob
from app.registry import (
    unknown_job_message,
)
from app.runtime.worker import utc_now
from app.store.history import RunRecord

logger = logging.getLogger(__name__)


def cmd_jobs(_args: argparse.Namespace, deployment: Deployment) -> int:
    """Each job: schedule, next instant, last run, and its record over the retention window."""
    settings = deployment.settings
    store = ready_store(settings)
    names = [j.name for j in deployment.jobs]
    latest = store.last_runs(names)
    stats = store.job_stats(days=settings.history_retention_days)
    streak = store.streaks(names)
    everything, paused = store.pauses()
    now = utc_now()
    rows = []
    for configured in deployment.jobs:
        last = latest.get(configured.name)
        record = stats.get(configured.name, RunStats())
        failing = streak.get(configured.name)
        pause = paused.get(configured.name) or everything
        rows.append(
            [
                configured.name,
                configured.schedule.expression,
                "yes" if configured.enabled else "no",
                _next_run(configured, now, settings),
                f"{last.status} {fmt_time(last.started_at, settings)}" if last else "never",
                str(record.runs),
                str(record.failures),
                _fmt_seconds(record.average_s),
                _fmt_seconds(record.p95_s),
                str(failing.failures if failing else 0),
                fmt_time(failing.last_success_at if failing else None, settings),
                f"yes: {pause.reason} ({pause.paused_by})" if pause else "no",
            ]
        )
    headers = [
        "JOB",
        "SCHEDULE",
        "ENABLED",
        "NEXT",
        "LAST RUN",
        "RUNS",
        "FAILED",
        "AVG",
        "P95",
        "FAILING",
        "LAST SUCCESS",
        "PAUSED",
    ]
    print(table(headers, rows))
    print(f"(runs, failures and durations over the last {settings.history_retention_days} days)")
    return EXIT_OK


def _next_run(configured: ConfiguredJob, now: datetime, settings: Settings) -> str:
    if not configured.enabled:
        return "-"
    if configured.job.manual_only:
        return "manual only (parameters without defaults)"
    return fmt_time(configured.schedule.next_after(now), settings)


def _fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _record_json(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "job": run.job_name,
        "status": run.status,
        "scheduled_for": run.scheduled_for.isoformat(),
        "trigger": run.trigger,
        "attempt": run.attempt,
        "started_at": run.started_at.isoformat(),
        "completed_at": run.completed_at.isoformat() if run.completed_at else None,
        "duration_s": run.duration_s,
        "worker_id": run.worker_id,
        "error_message": run.error_message,
        "result": run.result,
        "params": run.params,
        "dry_run": run.dry_run,
        "requested_by": run.requested_by,
    }


def cmd_history(args: argparse.Namespace, deployment: Deployment) -> int:
    """Show recent runs, newest first."""
    settings = deployment.settings
    store = ready_store(settings)
    if args.job is not None and args.job not in deployment.registry:
        known = store.recorded_job_names()
        if args.job not in known:
            raise UnknownJob(unknown_job_message(args.job, deployment.registry.names))
    runs = store.list_runs(
        job_name=args.job,
        status=args.status,
        unrecovered_failures=args.failed,
        limit=args.limit,
    )
    if args.json:
        print(json.dumps([_record_json(r) for r in runs], indent=2))
        return EXIT_OK
    rows = [
        [
            str(r.id),
            r.job_name,
            r.status,
            fmt_time(r.scheduled_for, settings),
            r.trigger,
            str(r.attempt),
            f"{r.duration_s * 1000:.0f} ms" if r.duration_s is not None else "-",
            r.worker_id,
            _detail(r),
        ]
        for r in runs
    ]
    headers = [
        "ID",
        "JOB",
        "STATUS",
        "SCHEDULED FOR",
        "TRIGGER",
        "ATTEMPT",
        "TOOK",
        "WORKER",
        "DETAIL",
    ]
    filtered = args.job or args.status or args.failed
    print(table(headers, rows) if rows else "no runs match" if filtered else "no runs recorded")
    return EXIT_OK


def _detail(run: RunRecord) -> str:
    """The error or result, after the run's parameters and whether it was a dry run."""
    parts = ["dry run"] if run.dry_run else []
    if run.params:
        parts.append("params " + json.dumps(run.params, separators=(",", ":")))
    parts.append(run.error_message or (json.dumps(run.result) if run.result else ""))
    return cut("; ".join(p for p in parts if p), 120)


def cmd_next(args: argparse.Namespace, deployment: Deployment) -> int:
    """Preview a job's next instants in CRON_TZ, marking daylight-saving shifts."""
    name = deployment.registry.get(args.job).name
    configured = next(j for j in deployment.jobs if j.name == name)
    zone = deployment.settings.cron_tz
    moment, previous_offset = utc_now(), None
    print(f"{name}: {configured.schedule.expression} ({zone.key})")
    for _ in range(args.n):
        moment = configured.schedule.next_after(moment)
        local = moment.astimezone(zone)
        offset = local.strftime("%z")
        shift = ""
        if previous_offset is not None and offset != previous_offset:
            shift = f"  <- clocks change: UTC{previous_offset} to UTC{offset}"
        print(f"{local.isoformat(sep=' ', timespec='seconds')}{shift}")
        previous_offset = offset
    if not configured.enabled:
        print(f"(disabled by {name.upper().replace('-', '_')}_ENABLED: these will not run)")
    return EXIT_OK
