"""PgQueuer 1.6 under the peer scenario, started the way its docs describe.

``setup`` is ``pgq install`` (run in-process through the ``pgq`` Typer app), the
step PgQueuer's installation guide asks for once per database; ``pgq upgrade``
is only for later releases. ``worker`` is ``pgqueuer.run(factory)``, which the
"running programmatically" guide gives as the equivalent of ``pgq run``: same
supervisor, same SIGINT/SIGTERM handling. ``pgq run`` itself cannot be used
here: in 1.6.0 with Typer 0.29 its ``--log-level`` option reaches
``setup_fancy_logger`` as a plain string and every start fails with
``AttributeError: 'str' object has no attribute 'name'``. So the worker sets
the ``pgqueuer`` logger up at WARNING with that same function, as ``pgq run
--log-level WARNING`` would. The factory yields a bare ``SchedulerManager``
(the supervisor accepts one, as the scheduler guide describes), so no queue
consumer polls alongside it.

Driver: asyncpg is not installed, so the factory opens a psycopg 3
``AsyncConnection`` with ``autocommit=True`` and wraps it in ``PsycopgDriver``,
as the drivers reference prescribes. The DSN goes to libpq untouched, so the
TCP and Unix-socket URL forms both work.

Several processes: the deployment guide scales by starting the same worker more
than once; nothing else is configured. Each process upserts the schedule rows
(one per entrypoint and expression) and polls them with ``FOR UPDATE SKIP
LOCKED``, flipping a due row to ``picked`` and moving its ``next_run`` on, so one
process claims each due row. That is the tool's only coordination.

Seconds: the docs show 5-field cron only, but ``schedule`` hands the expression
to croniter, whose optional sixth field is seconds, so ``* * * * * *`` is a
per-second schedule. Between polls the scheduler sleeps until the next due
time plus a fixed second of leeway (not configurable), so one process claims a
per-second row only every other second; several processes fill the gaps only
when their polls happen to fall on different seconds.

Instant: the handler receives the ``Schedule`` row as returned by the claiming
UPDATE, whose ``next_run`` is already the following instant; the due instant
is not passed on. The body therefore writes the current time floored to the
period, with source ``floor``.

SIGTERM and SIGINT are handled by ``pgqueuer.run`` itself: it sets the
scheduler's shutdown event, lets in-flight bodies finish and returns; exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pgqueuer
import psycopg
from pgqueuer import PsycopgDriver, Queries, SchedulerManager
from pgqueuer.adapters.cli.cli import app as pgq_app
from pgqueuer.core.logconfig import LogLevel, setup_fancy_logger
from pgqueuer.models import Schedule

from benchmarks.peers.contract import floor_instant, job_names, open_output, parse_args, run_line

SCHEDULES = {"second": "* * * * * *", "minute": "* * * * *", "year": "0 0 1 1 *"}


def _body(name: str, fd: int, every: str) -> Callable[[Schedule], Awaitable[None]]:
    """A schedule handler that appends one line for its run to ``fd``."""

    async def body(schedule: Schedule) -> None:
        started = time.time()
        os.write(fd, run_line(name, floor_instant(started, every), started, "floor"))

    return body


@contextlib.asynccontextmanager
async def scheduler(dsn: str, jobs: int, every: str, out: str) -> AsyncIterator[SchedulerManager]:
    """The worker factory: a SchedulerManager holding ``jobs`` jobs on one connection."""
    fd = open_output(out)
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
            manager = SchedulerManager(Queries(PsycopgDriver(connection)))
            for name in job_names(jobs):
                manager.schedule(name, SCHEDULES[every])(_body(name, fd, every))
            print("ready", flush=True)
            yield manager
    finally:
        os.close(fd)


def main() -> None:
    """`setup --dsn DSN` or `worker --dsn DSN --jobs J --every P --out PATH`."""
    args = parse_args("peer_pgqueuer")
    if args.command == "setup":
        pgq_app(["--pg-dsn", args.dsn, "install"], prog_name="pgq")
        return
    setup_fancy_logger(LogLevel.WARNING)
    factory = functools.partial(scheduler, args.dsn, args.jobs, args.every, args.out)
    asyncio.run(pgqueuer.run(factory))


if __name__ == "__main__":
    main()
