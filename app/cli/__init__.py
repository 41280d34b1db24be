"""The `cronlock` command: the parser, and mapping errors to exit codes.

One module per family of subcommands: `worker`, `steering` (run, retry, pause,
resume), `views` (jobs, history, next), `schema` (migrate, check); `common` holds
what they share.

Exit codes: 0 ok, 1 a job failed, 2 bad usage or configuration (one line on
stderr saying what, where and how to fix it; nothing is written), 130
interrupted. ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from app import __version__
from app.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, Deployment, load_deployment
from app.cli.schema import cmd_check, cmd_migrate
from app.cli.steering import cmd_pause, cmd_resume, cmd_retry, cmd_run
from app.cli.views import cmd_history, cmd_jobs, cmd_next
from app.cli.worker import cmd_serve, cmd_worker
from app.core.display import printable
from app.core.outcomes import RunStatus
from app.core.redaction import scrub, secrets_in
from app.core.stops import StopNow
from app.errors import ConfigError, CronlockError
from app.ops import alerts


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a positive whole number")
    return value


MAX_PREVIEW = 1000


def _preview_count(raw: str) -> int:
    value = _positive(raw)
    if value > MAX_PREVIEW:
        raise argparse.ArgumentTypeError(f"{raw!r} is more than {MAX_PREVIEW} instants")
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
    # -v before or after the command: SUPPRESS keeps a subcommand's default from
    # overwriting a -v given before it.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks on errors",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **options: Any) -> argparse.ArgumentParser:
        return subcommands.add_parser(name, parents=[verbose], **options)

    worker = command("worker", help="run the jobs on their schedules")
    worker.add_argument(
        "--once", action="store_true", help="settle the jobs due now, then exit (timers, CronJobs)"
    )
    worker.set_defaults(handler=cmd_worker)

    serve = command(
        "serve", help="serve the console and its API (METRICS_PORT) without running jobs"
    )
    serve.set_defaults(handler=cmd_serve)

    run = command("run", help="run one job now, through the lock")
    run.add_argument("job", metavar="JOB")
    run.add_argument(
        "--force", action="store_true", help="run even if the job is disabled or paused"
    )
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the job's model (repeatable); checked before anything runs",
    )
    run.add_argument(
        "--params-json", metavar="JSON", help="parameters as a JSON object (--param wins)"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="run with ctx.dry_run true: the body must write nothing (its sessions roll back)",
    )
    run.set_defaults(handler=cmd_run)

    command("jobs", help="list jobs, next instants and last runs").set_defaults(handler=cmd_jobs)

    history = command("history", help="show recent runs, newest first")
    history.add_argument("job", metavar="JOB", nargs="?")
    history.add_argument(
        "--status", type=_status, help="RUNNING, SUCCESS, FAILURE, SKIPPED or MISSED"
    )
    history.add_argument("--limit", type=_positive, default=20, help="how many runs (20)")
    history.add_argument(
        "--failed",
        action="store_true",
        help="failed runs to deal with: the latest attempt of each instant nothing recovered",
    )
    history.add_argument("--json", action="store_true", help="print JSON instead of a table")
    history.set_defaults(handler=cmd_history)

    upcoming = command("next", help="preview a job's next instants")
    upcoming.add_argument("job", metavar="JOB")
    upcoming.add_argument(
        "-n", type=_preview_count, default=10, help=f"how many (10, at most {MAX_PREVIEW})"
    )
    upcoming.set_defaults(handler=cmd_next)

    retry = command("retry", help="re-run a FAILED run's instant, as a new attempt")
    retry.add_argument("run_id", metavar="RUN_ID", type=_positive)
    retry.set_defaults(handler=cmd_retry)

    pause = command("pause", help="pause a job (or --all) on every replica")
    pause.add_argument("job", metavar="JOB", nargs="?")
    pause.add_argument("--all", action="store_true", help="pause every job")
    pause.add_argument("--reason", required=True, help="why, shown in history and `jobs`")
    pause.set_defaults(handler=cmd_pause)

    resume = command("resume", help="resume a paused job (or --all)")
    resume.add_argument("job", metavar="JOB", nargs="?")
    resume.add_argument("--all", action="store_true", help="lift `pause --all`")
    resume.set_defaults(handler=cmd_resume)

    command("migrate", help="upgrade the schema to the latest revision").set_defaults(
        handler=cmd_migrate
    )
    command("check", help="check configuration, registry, database and schema").set_defaults(
        handler=cmd_check
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the command, and map errors to exit codes."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, Deployment], int] = args.handler
    env_file = Path.cwd() / ".env"
    try:
        from_file = _load_env_file(env_file)
    except UnicodeDecodeError as exc:
        print(
            f"cronlock {args.command}: error: {env_file} is not UTF-8 text "
            f"(byte {exc.start}); save it as UTF-8",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        return handler(args, load_deployment())
    except CronlockError as exc:
        if args.verbose:
            traceback.print_exc()
        message = scrub(exc.message, secrets_in(os.environ, os.environ.get("DATABASE_URL")))
        if isinstance(exc, ConfigError):
            message += _set_in_file(message, from_file, env_file)
        # One line, or one per problem (a job's refused parameters), each escaped.
        shown = "\n".join(printable(line) for line in message.split("\n"))
        print(f"cronlock {args.command}: error: {shown}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        print(f"cronlock {args.command}: interrupted", file=sys.stderr)
        return exc.exit_code if isinstance(exc, StopNow) else EXIT_INTERRUPTED
    finally:
        alerts.flush()


def _load_env_file(path: Path) -> set[str]:
    """Load `path` under the real environment, which wins; the variables it set."""
    before = set(os.environ)
    load_dotenv(path, override=False)
    return set(os.environ) - before


def _set_in_file(message: str, from_file: set[str], path: Path) -> str:
    """Where a variable the message names was set, when that was the .env file."""
    # Named as the errors name a bad value: `NAME=value ...`, or `NAME is ...` first.
    named = sorted(
        v for v in from_file if re.search(rf"(^{re.escape(v)} |\b{re.escape(v)}=)", message)
    )
    if not named:
        return ""
    return f" ({', '.join(named)} set in {path})"
