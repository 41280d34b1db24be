"""cronlock under the peer scenario, through its real command line.

``setup`` is ``cronlock migrate``; ``worker`` is ``cronlock worker`` with
``JOBS_MODULE`` pointing back at this module, whose ``JOBS`` are built from the
``PEER_*`` variables the ``worker`` subcommand sets. Readiness is the worker's own
systemd ``READY=1``, received on a datagram socket this process binds, so the
benchmark waits for exactly what a service manager would. Logging is at WARNING,
as for every tool, so the figures are about scheduling, not log lines.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.cli import main as cronlock_main
from app.job import Job, RunContext
from benchmarks.peers.contract import job_names, open_output, parse_args, run_line

SCHEDULES = {"second": "* * * * * *", "minute": "* * * * *", "year": "0 0 1 1 *"}


def _appender(path: str) -> Callable[[RunContext], None]:
    """A body that appends its run's line: the instant comes from the run's context."""
    fd = open_output(path)

    def body(ctx: RunContext) -> None:
        started = time.time()
        os.write(fd, run_line(ctx.job_name, ctx.scheduled_for.timestamp(), started, "tool"))

    return body


def _jobs_from_environment() -> list[Job]:
    if "PEER_JOBS" not in os.environ:
        return []
    body = _appender(os.environ["PEER_OUT"])
    schedule = SCHEDULES[os.environ["PEER_EVERY"]]
    return [
        Job(name=name, body=body, schedule=schedule)
        for name in job_names(int(os.environ["PEER_JOBS"]))
    ]


JOBS = _jobs_from_environment()


def _announce_ready(sock: socket.socket) -> None:
    """Print `ready` once the worker sends READY=1 over NOTIFY_SOCKET."""
    while True:
        message = sock.recv(4096).decode()
        if "READY=1" in message.split("\n"):
            print("ready", flush=True)
            return


def main() -> None:
    """`setup --dsn DSN` or `worker --dsn DSN --jobs J --every P --out PATH`."""
    args = parse_args("peer_cronlock")
    os.environ.update(DATABASE_URL=args.dsn, LOG_LEVEL="WARNING", JOBS_MODULE=__file__)
    if args.command == "setup":
        sys.exit(cronlock_main(["migrate"]))
    os.environ.update(PEER_JOBS=str(args.jobs), PEER_EVERY=args.every, PEER_OUT=args.out)
    with tempfile.TemporaryDirectory(prefix="peer-cronlock-") as folder:
        path = str(Path(folder) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            os.environ["NOTIFY_SOCKET"] = path
            threading.Thread(target=_announce_ready, args=(sock,), daemon=True).start()
            sys.exit(cronlock_main(["worker"]))


if __name__ == "__main__":
    main()
