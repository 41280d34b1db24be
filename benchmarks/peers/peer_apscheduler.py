"""Benchmark adapter for APScheduler 3 with its SQLAlchemy job store on PostgreSQL.

How the tool is configured, and why:

- Job store: ``SQLAlchemyJobStore`` on an engine that uses the psycopg 3 driver
  (``postgresql+psycopg://``). APScheduler's user guide names this store on PostgreSQL
  as its preferred persistent store because of the database's integrity guarantees.
  The store creates its single ``apscheduler_jobs`` table (id, next_run_time, pickled
  job state) when it starts, so ``setup`` just starts and stops a paused scheduler on
  the empty database.
- Jobs: the guide insists that jobs added to a persistent store at start-up carry an
  explicit id and ``replace_existing=True``, otherwise every restart adds another copy.
  Each worker process therefore adds the same J ids (``job-000`` ...) that way. The
  callable is given as a ``module:function`` text reference, since the store pickles
  jobs and the adapter itself runs as ``__main__``.
- Triggers: ``CronTrigger`` in UTC. APScheduler supports seconds natively: ``second``
  is ``CronTrigger(second="*")``; ``minute`` and ``year`` come from the crontab lines
  ``* * * * *`` and ``0 0 1 1 *``.
- Job defaults: the library's own defaults, spelled out: ``coalesce=True`` (the guide's
  advice for rolling a backlog of missed run times into a single run),
  ``misfire_grace_time=1`` (a run may start at most one second late, which also keeps
  the floored instant in the right second) and ``max_instances=1``.
- Executor: the default ``ThreadPoolExecutor``, sized to one thread per job (J, at
  least 10). The guide's note on misfires says that runs waiting for a free thread
  can be skipped as too late and that the pool should be made larger; with J threads
  no run of a 200-job second ever waits for one. The pool starts threads lazily, so
  this costs nothing while bodies finish in microseconds.
- Scheduler: ``BackgroundScheduler``; the main thread waits for SIGTERM/SIGINT and then
  calls ``shutdown()``, which waits for the scheduler's current pass to finish.

Several processes: the FAQ says a persistent job store cannot be shared by several
scheduler processes, because APScheduler 3 has no synchronisation between them, and
that doing so leads to duplicate or missed runs. No locking is added here; the
benchmark shows what happens.

Instant: APScheduler 3 calls the job with its own arguments only and does not pass it
the scheduled run time, so ``instant`` is the start time floored to the period and
``source`` is ``floor``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from benchmarks.peers.contract import floor_instant, job_names, open_output, parse_args, run_line

# The job body is referenced by its import path: jobs are pickled into the store.
JOB_FUNC_REF = "benchmarks.peers.peer_apscheduler:write_line"

_fds: dict[str, int] = {}
_fds_lock = threading.Lock()


def write_line(job_name: str, out_path: str, every: str) -> None:
    """Job body: append one line for this run with a single ``os.write``."""
    started = time.time()
    fd = _fds.get(out_path)
    if fd is None:
        with _fds_lock:
            fd = _fds.get(out_path)
            if fd is None:
                fd = open_output(out_path)
                _fds[out_path] = fd
    os.write(fd, run_line(job_name, floor_instant(started, every), started, "floor"))


def sqlalchemy_url(dsn: str) -> str:
    """Turn a libpq URL into an SQLAlchemy URL for the psycopg 3 driver."""
    for scheme in ("postgresql://", "postgres://"):
        if dsn.startswith(scheme):
            return "postgresql+psycopg://" + dsn[len(scheme) :]
    return dsn


def make_engine(dsn: str) -> Engine:
    """Create the SQLAlchemy engine that the job store uses."""
    return create_engine(sqlalchemy_url(dsn))


def make_trigger(every: str) -> CronTrigger:
    """Build the cron trigger for a period name."""
    if every == "second":
        return CronTrigger(second="*", timezone=UTC)
    if every == "minute":
        return CronTrigger.from_crontab("* * * * *", timezone=UTC)
    return CronTrigger.from_crontab("0 0 1 1 *", timezone=UTC)


def make_scheduler(engine: Engine, jobs: int) -> BackgroundScheduler:
    """Create a scheduler on the shared SQLAlchemy job store."""
    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine)},
        executors={"default": ThreadPoolExecutor(max_workers=max(10, jobs))},
        job_defaults={"coalesce": True, "misfire_grace_time": 1, "max_instances": 1},
        timezone=UTC,
    )


def setup(dsn: str) -> int:
    """Create the job store's table (the store does it when it starts)."""
    engine = make_engine(dsn)
    scheduler = make_scheduler(engine, 0)
    scheduler.start(paused=True)
    scheduler.shutdown(wait=False)
    engine.dispose()
    return 0


def worker(dsn: str, jobs: int, every: str, out: str) -> int:
    """Register the jobs, run the scheduler, and stop on SIGTERM or SIGINT."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    engine = make_engine(dsn)
    scheduler = make_scheduler(engine, jobs)
    trigger = make_trigger(every)
    out_path = os.path.abspath(out)
    for name in job_names(jobs):
        scheduler.add_job(
            JOB_FUNC_REF,
            trigger=trigger,
            args=(name, out_path, every),
            id=name,
            name=name,
            replace_existing=True,
        )
    scheduler.start()
    print("ready", flush=True)
    while not stop.wait(0.5):
        pass
    scheduler.shutdown(wait=True)
    engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args("peer_apscheduler", argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    if args.command == "setup":
        return setup(args.dsn)
    return worker(args.dsn, args.jobs, args.every, args.out)


if __name__ == "__main__":
    sys.exit(main())
