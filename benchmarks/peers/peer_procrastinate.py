"""Benchmark adapter for procrastinate 3.10 (a PostgreSQL task queue) and its periodic tasks.

Usage, from the repository root::

    .venv/bin/python -m benchmarks.peers.peer_procrastinate setup  --dsn DSN
    .venv/bin/python -m benchmarks.peers.peer_procrastinate worker --dsn DSN --jobs J \\
        --every {second,minute,year} --out PATH

How the tool is configured, and why:

- Connector: ``procrastinate.PsycopgConnector(conninfo=DSN)``, the psycopg 3 connector with
  its async pool. The libpq URL is passed through untouched, so both the TCP form and the
  Unix-socket form (``postgresql://user@/db?host=/dir``) work.
- ``setup`` applies the schema with the app's ``schema_manager.apply_schema_async()``; this
  is what the ``procrastinate schema --apply`` command does, and the docs describe it as the
  way to install the schema into an empty database.
- ``worker`` registers J tasks named ``job-000`` ... and marks each of them with
  ``app.periodic(cron=...)``. The cron strings are ``* * * * * *`` (procrastinate takes an
  optional sixth column, at the end, for seconds, so it can defer a job once per second),
  ``* * * * *`` and ``0 0 1 1 *``.
- Periodic tasks receive the instant they were scheduled for as an integer keyword argument
  named ``timestamp`` (Unix seconds), so ``source`` is ``tool``.
- Several processes: the docs say every worker runs the periodic deferrer itself and the
  database keeps a job from being deferred twice for the same period (a unique row per task,
  periodic id and timestamp in ``procrastinate_periodic_defers``). So nothing extra is
  configured: every process is a plain worker with the default queue. Queueing locks are
  documented as a way to stop jobs from piling up in the queue (at most one waiting job per
  lock), not as a way to deduplicate deferrals; with a per-second schedule they would drop
  instants whenever the previous job is still waiting, so they are not used.
- Job bodies are ``async`` functions (a single small ``os.write``), which the worker runs on
  its event loop; the worker runs with its default concurrency of 1 and the default
  LISTEN/NOTIFY wake-up on new jobs.
- Shutdown: the worker runs as an asyncio task; SIGTERM and SIGINT cancel that task, which
  the docs list as a supported way to stop a worker (it stops fetching, waits for the job in
  progress and unregisters). The worker's own signal handlers are turned off because they
  are only installed once its loop has started, which leaves a gap after ``ready``.
- Logging: the root logger and the ``procrastinate`` loggers are set to WARNING. The App is
  built in ``__main__``, which makes procrastinate log one warning at start-up: its workers
  normally import task modules by dotted path, but here every process registers the same
  explicitly named tasks itself, so the warning does not apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable

import procrastinate

from benchmarks.peers.contract import job_names, open_output, parse_args, run_line

CRONS = {
    "second": "* * * * * *",  # sixth column = seconds
    "minute": "* * * * *",
    "year": "0 0 1 1 *",
}


def make_app(dsn: str) -> procrastinate.App:
    """Return an app that talks to ``dsn`` through the psycopg 3 connector."""
    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))


async def setup(dsn: str) -> None:
    """Install procrastinate's schema into the (empty) database."""
    app = make_app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


def make_body(name: str, fd: int) -> Callable[..., Awaitable[None]]:
    """Return the body of job ``name``: one appended line per run."""

    async def body(timestamp: int) -> None:
        started = time.time()
        os.write(fd, run_line(name, timestamp, started, "tool"))

    body.__name__ = body.__qualname__ = name.replace("-", "_")
    return body


def register_jobs(app: procrastinate.App, jobs: int, cron: str, fd: int) -> None:
    """Register ``jobs`` distinct periodic tasks on ``app``."""
    for name in job_names(jobs):
        task = app.task(name=name)(make_body(name, fd))
        app.periodic(cron=cron)(task)


async def run_worker(dsn: str, jobs: int, every: str, out: str) -> None:
    """Run one worker (job runner and periodic deferrer) until SIGTERM or SIGINT."""
    fd = open_output(out)
    app = make_app(dsn)
    register_jobs(app, jobs, CRONS[every], fd)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with app.open_async():
            if stop.is_set():
                return
            worker = asyncio.create_task(app.run_worker_async(install_signal_handlers=False))
            print("ready", flush=True)
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not worker.done():
                worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
    finally:
        os.close(fd)


def _exit_now(signum: int, frame: object) -> None:
    """Leave at once (exit code 0) on a signal that arrives before the event loop is up."""
    sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run ``setup`` or ``worker``."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_now)
    args = parse_args("peer_procrastinate", argv)

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("procrastinate").setLevel(logging.WARNING)

    if args.command == "setup":
        asyncio.run(setup(args.dsn))
    else:
        asyncio.run(run_worker(args.dsn, args.jobs, args.every, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
