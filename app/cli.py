"""The `cronlock` command: worker, run, jobs, history, migrate, check.

Exit codes: 0 ok, 1 a job failed, 2 bad usage or configuration (one line on
stderr saying what, where and how to fix it; nothing is written). ``-v`` adds the
traceback.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from dotenv import load_dotenv

from app import __version__, alerts
from app.config import Settings
from app.control import operator, pause_all, pause_job, pauses, resume_all, resume_job
from app.db import Database
from app.embedded import start_embedded
from app.errors import ConfigError, CronlockError, UnknownJob
from app.health import HealthServer
from app.history import (
    JobStats,
    RunRecord,
    get_run,
    job_stats,
    last_runs,
    latest_attempt,
    list_runs,
    recorded_job_names,
    streaks,
)
from app.lock import Skip, Wait, ensure_jobs
from app.logs import configure_logging
from app.migrations import current_revision, ensure_at_head, head_revision, upgrade_to_head
from app.models import RunStatus, Trigger
from app.registry import (
    ConfiguredJob,
    JobRegistry,
    configure,
    load_registry,
    unknown_job_message,
    unmatched_overrides,
)
from app.runner import AttemptResult, RunOutcome, attempt_run
from app.systemd import Notifier
from app.worker import LIVENESS_INTERVAL_S, Worker, default_worker_id, utc_now

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130


@dataclass
class Deployment:
    """What every command starts from: settings, the registry and its configuration."""

    settings: Settings
    registry: JobRegistry
    jobs: list[ConfiguredJob]


def _load_deployment(environ: dict[str, str] | None = None) -> Deployment:
    settings = Settings.from_env(environ)
    configure_logging(settings.log_level, log_format=settings.log_format, secrets=settings.secrets)
    registry = load_registry(settings.jobs_module)
    jobs = configure(registry, settings)
    for variable in unmatched_overrides(registry, settings):
        logger.warning(
            "%s names no registered job; check its spelling",
            variable,
            extra={"event": "unmatched_job_variable", "variable": variable},
        )
    return Deployment(settings, registry, jobs)


def open_database(settings: Settings, *, migrate_embedded: bool = True) -> Database:
    """Connect to DATABASE_URL, or start the embedded server (migrated) when it is unset."""
    if settings.database_url is not None:
        database = Database(settings.database_url)
        database.ping()
        return database
    database = Database(start_embedded(settings.data_dir))
    if migrate_embedded:
        before, after = upgrade_to_head(database)
        if before != after:
            logger.info(
                "migrated the embedded database from %s to %s",
                before or "empty",
                after,
                extra={"event": "schema_migrated"},
            )
    return database


def _ready_database(settings: Settings) -> Database:
    database = open_database(settings)
    ensure_at_head(database)
    return database


# -- commands ----------------------------------------------------------------


def cmd_worker(args: argparse.Namespace, deployment: Deployment) -> int:
    """Run the jobs on their schedules until SIGINT/SIGTERM (or once, with --once)."""
    settings = deployment.settings
    database = _ready_database(settings)
    notifier = Notifier(settings.notify_socket, watchdog_usec=settings.watchdog_usec)
    worker = Worker(database, deployment.jobs, settings, notifier=notifier)
    _stop_on_signals(worker)
    server = None
    if settings.metrics_port is not None and not args.once:
        server = HealthServer(
            database,
            worker.liveness,
            host=settings.metrics_host,
            port=settings.metrics_port,
            # A long run keeps liveness up through its lease renewals.
            max_silence_s=max(6 * LIVENESS_INTERVAL_S, 3 * settings.heartbeat_interval_s),
        )
        server.start()
    logger.info(
        "worker %s started with %d jobs (%d enabled) on %s",
        worker.worker_id,
        len(worker.jobs),
        len(worker.enabled),
        database.display_url,
        extra={"event": "worker_started", "worker_id": worker.worker_id},
    )
    try:
        report = worker.run_once() if args.once else worker.run_forever()
    finally:
        if server is not None:
            server.stop()
    if worker.forced_stop:
        return EXIT_INTERRUPTED
    return EXIT_JOB_FAILED if report.failed and args.once else EXIT_OK


def _stop_on_signals(worker: Worker) -> None:
    """First SIGINT/SIGTERM: graceful stop with a grace period; second: stop now."""
    # next() on a count is one C call, so a second signal landing inside this
    # handler still sees itself as the second.
    received = itertools.count(1)

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if next(received) > 1:
            logger.warning("second %s: stopping now", name, extra={"event": "worker_interrupted"})
            worker.force_stop()
        worker.request_stop()
        logger.info(
            "%s received: no new job will start; the current one has %gs to finish",
            name,
            worker.settings.shutdown_grace_s,
            extra={"event": "worker_stopping"},
        )

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def cmd_run(args: argparse.Namespace, deployment: Deployment) -> int:
    """Run one job now, through the same lock and pre-checks as the schedule."""
    job = deployment.registry.get(args.job)
    configured = next(j for j in deployment.jobs if j.name == job.name)
    if not configured.enabled and not args.force:
        raise ConfigError(
            f"job {job.name!r} is disabled by its _ENABLED flag; "
            "enable it, or pass --force to run it anyway"
        )
    database = _ready_database(deployment.settings)
    ensure_jobs(database, [job.name])
    result = attempt_run(
        database,
        job,
        scheduled_for=utc_now(),
        trigger=Trigger.MANUAL,
        settings=deployment.settings,
        worker_id=default_worker_id(),
        wait_for_lock=True,
        ignore_pause=args.force,
    )
    return _print_attempt(job.name, result)


def _print_attempt(job_name: str, result: AttemptResult) -> int:
    if isinstance(result, RunOutcome):
        detail = f": {result.error}" if result.error else ""
        print(
            f"run {result.run_id} of {job_name}: {result.status} "
            f"in {result.duration_ms:.0f} ms{detail}"
        )
        return EXIT_JOB_FAILED if result.status == RunStatus.FAILURE else EXIT_OK
    reason = result.reason if isinstance(result, Skip | Wait) else "another worker holds its lock"
    print(f"{job_name} skipped: {reason}")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace, deployment: Deployment) -> int:
    """Re-run a FAILED run's instant as a new attempt, through the lock."""
    database = _ready_database(deployment.settings)
    run = get_run(database, args.run_id)
    if run is None:
        raise ConfigError(f"no run has id {args.run_id}; `cronlock history --failed` lists them")
    if run.status != RunStatus.FAILURE:
        raise ConfigError(f"run {run.id} is {run.status}; only a FAILURE can be retried")
    if run.job_name not in deployment.registry:
        raise UnknownJob(unknown_job_message(run.job_name, deployment.registry.names))
    newest = latest_attempt(database, run.job_name, run.scheduled_for)
    if newest != run.attempt:
        raise ConfigError(
            f"run {run.id} is attempt {run.attempt} of its instant, which already has attempt "
            f"{newest}; retry the latest one"
        )
    result = attempt_run(
        database,
        deployment.registry.get(run.job_name),
        scheduled_for=run.scheduled_for,
        trigger=Trigger.MANUAL,
        settings=deployment.settings,
        worker_id=default_worker_id(),
        wait_for_lock=True,
        ignore_pause=True,
        retry_run_id=run.id,
    )
    return _print_attempt(run.job_name, result)


def cmd_pause(args: argparse.Namespace, deployment: Deployment) -> int:
    """Pause one job, or all, on every replica."""
    if bool(args.job) == bool(args.all):
        raise ConfigError("name one JOB to pause, or pass --all")
    database = _ready_database(deployment.settings)
    if args.all:
        pause_all(database, reason=args.reason, paused_by=operator())
        print(f"all jobs paused: {args.reason}")
    else:
        name = _known_job(database, deployment, args.job)
        pause_job(database, name, reason=args.reason, paused_by=operator())
        print(f"{name} paused: {args.reason}")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, deployment: Deployment) -> int:
    """Resume one job, or lift `pause --all`."""
    if bool(args.job) == bool(args.all):
        raise ConfigError("name one JOB to resume, or pass --all")
    database = _ready_database(deployment.settings)
    if args.all:
        was = resume_all(database)
        print("all jobs resumed" if was else "jobs were not paused with --all")
    else:
        name = _known_job(database, deployment, args.job)
        print(f"{name} resumed" if resume_job(database, name) else f"{name} was not paused")
    return EXIT_OK


def _known_job(database: Database, deployment: Deployment, name: str) -> str:
    if name in deployment.registry or name in recorded_job_names(database):
        return name
    raise UnknownJob(unknown_job_message(name, deployment.registry.names))


def _fmt_time(moment: datetime | None, settings: Settings) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(settings.cron_tz).isoformat(sep=" ", timespec="seconds")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=False)).rstrip()
        for line in lines
    )


def cmd_jobs(_args: argparse.Namespace, deployment: Deployment) -> int:
    """Each job: schedule, next instant, last run, and its record over the retention window."""
    settings = deployment.settings
    database = _ready_database(settings)
    names = [j.name for j in deployment.jobs]
    latest = last_runs(database, names)
    stats = job_stats(database, days=settings.history_retention_days)
    streak = streaks(database, names)
    everything, paused = pauses(database)
    now = utc_now()
    rows = []
    for configured in deployment.jobs:
        last = latest.get(configured.name)
        record = stats.get(configured.name, JobStats(0, 0, None, None))
        failing = streak.get(configured.name)
        pause = paused.get(configured.name) or everything
        rows.append(
            [
                configured.name,
                configured.schedule.expression,
                "yes" if configured.enabled else "no",
                _fmt_time(configured.schedule.next_after(now), settings)
                if configured.enabled
                else "-",
                f"{last.status} {_fmt_time(last.started_at, settings)}" if last else "never",
                str(record.runs),
                str(record.failures),
                _fmt_seconds(record.average_s),
                _fmt_seconds(record.p95_s),
                str(failing.failures if failing else 0),
                _fmt_time(failing.last_success_at if failing else None, settings),
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
    print(_table(headers, rows))
    print(f"(runs, failures and durations over the last {settings.history_retention_days} days)")
    return EXIT_OK


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
    }


def cmd_history(args: argparse.Namespace, deployment: Deployment) -> int:
    """Show recent runs, newest first."""
    settings = deployment.settings
    database = _ready_database(settings)
    if args.job is not None and args.job not in deployment.registry:
        known = recorded_job_names(database)
        if args.job not in known:
            raise UnknownJob(unknown_job_message(args.job, deployment.registry.names))
    runs = list_runs(
        database,
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
            _fmt_time(r.scheduled_for, settings),
            r.trigger,
            f"{r.duration_s:.3f}s" if r.duration_s is not None else "-",
            r.worker_id,
            (r.error_message or (json.dumps(r.result) if r.result else ""))[:80],
        ]
        for r in runs
    ]
    headers = ["ID", "JOB", "STATUS", "SCHEDULED FOR", "TRIGGER", "TOOK", "WORKER", "DETAIL"]
    print(_table(headers, rows) if rows else "no runs recorded")
    return EXIT_OK


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


def cmd_migrate(_args: argparse.Namespace, deployment: Deployment) -> int:
    """Upgrade the schema to the latest revision."""
    database = open_database(deployment.settings, migrate_embedded=False)
    before, after = upgrade_to_head(database)
    if before == after:
        print(f"schema already at {after} on {database.display_url}")
    else:
        print(f"schema upgraded from {before or 'empty'} to {after} on {database.display_url}")
    return EXIT_OK


def cmd_check(_args: argparse.Namespace, deployment: Deployment) -> int:
    """Configuration, registry, database and schema; exit 2 when any is wrong."""
    settings = deployment.settings
    enabled = sum(j.enabled for j in deployment.jobs)
    print(
        f"ok    configuration (CRON_TZ={settings.cron_tz.key}, JOBS_MODULE={settings.jobs_module})"
    )
    print(f"ok    registry: {len(deployment.jobs)} jobs, {enabled} enabled, schedules valid")
    database = open_database(settings, migrate_embedded=False)
    print(f"ok    database reachable at {database.display_url}")
    current, head = current_revision(database), head_revision()
    if current != head:
        ensure_at_head(database)
    print(f"ok    schema at head ({head})")
    return EXIT_OK


# -- entry point ---------------------------------------------------------------


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a positive whole number")
    return value


def _status(raw: str) -> str:
    value = raw.upper()
    if value not in RunStatus.__members__:
        choices = ", ".join(RunStatus.__members__)
        raise argparse.ArgumentTypeError(f"{raw!r} is not a status; use one of {choices}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="cronlock",
        description="Run scheduled jobs once per instant across replicas, locked in PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=f"cronlock {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser("worker", help="run the jobs on their schedules")
    worker.add_argument(
        "--once", action="store_true", help="settle the jobs due now, then exit (timers, CronJobs)"
    )
    worker.set_defaults(handler=cmd_worker)

    run = commands.add_parser("run", help="run one job now, through the lock")
    run.add_argument("job", metavar="JOB")
    run.add_argument(
        "--force", action="store_true", help="run even if the job is disabled or paused"
    )
    run.set_defaults(handler=cmd_run)

    commands.add_parser("jobs", help="list jobs, next instants and last runs").set_defaults(
        handler=cmd_jobs
    )

    history = commands.add_parser("history", help="show recent runs, newest first")
    history.add_argument("job", metavar="JOB", nargs="?")
    history.add_argument("--status", type=_status, help="RUNNING, SUCCESS or FAILURE")
    history.add_argument("--limit", type=_positive, default=20, help="how many runs (20)")
    history.add_argument(
        "--failed", action="store_true", help="failed runs whose instant nothing has recovered"
    )
    history.add_argument("--json", action="store_true", help="print JSON instead of a table")
    history.set_defaults(handler=cmd_history)

    upcoming = commands.add_parser("next", help="preview a job's next instants")
    upcoming.add_argument("job", metavar="JOB")
    upcoming.add_argument("-n", type=_positive, default=10, help="how many (10)")
    upcoming.set_defaults(handler=cmd_next)

    retry = commands.add_parser("retry", help="re-run a FAILED run's instant, as a new attempt")
    retry.add_argument("run_id", metavar="RUN_ID", type=_positive)
    retry.set_defaults(handler=cmd_retry)

    pause = commands.add_parser("pause", help="pause a job (or --all) on every replica")
    pause.add_argument("job", metavar="JOB", nargs="?")
    pause.add_argument("--all", action="store_true", help="pause every job")
    pause.add_argument("--reason", required=True, help="why, shown in history and `jobs`")
    pause.set_defaults(handler=cmd_pause)

    resume = commands.add_parser("resume", help="resume a paused job (or --all)")
    resume.add_argument("job", metavar="JOB", nargs="?")
    resume.add_argument("--all", action="store_true", help="lift `pause --all`")
    resume.set_defaults(handler=cmd_resume)

    commands.add_parser("migrate", help="upgrade the schema to the latest revision").set_defaults(
        handler=cmd_migrate
    )
    commands.add_parser(
        "check", help="check configuration, registry, database and schema"
    ).set_defaults(handler=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the command, and map errors to exit codes."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, Deployment], int] = args.handler
    load_dotenv(Path.cwd() / ".env", override=False)
    try:
        return handler(args, _load_deployment())
    except CronlockError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"cronlock {args.command}: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"cronlock {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        alerts.flush()
