"""Screenshots of the console for the docs, taken from a seeded history.

    createdb -h 127.0.0.1 -U postgres cronlock_screenshots
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/cronlock_screenshots make screenshots
    dropdb -h 127.0.0.1 -U postgres cronlock_screenshots

Migrates DATABASE_URL (a throwaway database: it refuses one that has runs), seeds
three days of history for the jobs of scripts/console_demo_jobs.py (successes, a
retried failure, a failing streak, pre-check skips, a paused job, runs with params
and a dry run, a run going on), serves the console with `cronlock serve`, and saves
docs/console-{overview,job,run}.png with Debian's chromium driven by Playwright.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import ViewportSize, sync_playwright
from sqlalchemy import func, select

from app.config import normalize_database_url
from app.core.schedule import parse_schedule
from app.errors import CronlockError
from app.store.database import Database
from app.store.migrations import upgrade_to_head
from app.store.models import JobExecution, JobRow

REPO = Path(__file__).resolve().parents[1]
JOBS_MODULE = REPO / "scripts" / "console_demo_jobs.py"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}
MAX_PNG_BYTES = 400 * 1024
HISTORY = timedelta(days=3)
WORKERS = ("web-1:2314", "web-2:2290")
OPERATOR = "alice"
PAUSE_REASON = "search cluster upgrade, back by 11:00"
JOB_NAMES = (
    "refresh-exchange-rates",
    "sync-crm-contacts",
    "charge-renewals",
    "export-warehouse",
    "reindex-search",
    "backfill-invoices",
)


class ScreenshotError(Exception):
    """What stops the script, said in one line."""


@dataclass(frozen=True)
class Seeded:
    """The pages worth a screenshot in the seeded history."""

    job_name: str
    run_id: int


class History:
    """The runs of the seeded deployment, built in memory and written in one transaction."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.since = now - HISTORY
        # The same history, run after run (but for the clock); made-up, not secret.
        self.rng = random.Random(7)  # noqa: S311
        self.runs: list[JobExecution] = []
        # When each job was deployed: the console shows no instant before it.
        self.registered = {name: self.since - timedelta(minutes=1) for name in JOB_NAMES}

    def instants(self, job_name: str, expression: str) -> list[datetime]:
        """The schedule's instants from the job's deployment to now."""
        schedule = parse_schedule(expression, zone=ZoneInfo("UTC"), source="screenshots")
        found = []
        for moment in schedule.walk(self.registered[job_name], forward=True):
            if moment > self.now:
                break
            found.append(moment)
        return found

    def add(
        self,
        job_name: str,
        at: datetime,
        status: str,
        *,
        took_s: float = 0.0,
        after_s: float | None = None,
        attempt: int = 1,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        trigger: str = "schedule",
        params: dict[str, Any] | None = None,
        dry_run: bool = False,
        requested_by: str | None = None,
    ) -> JobExecution:
        """One run of `job_name` for instant `at`, started `after_s` later; still RUNNING
        when it would end after now."""
        started = at + timedelta(
            seconds=self.rng.uniform(0.05, 0.4) if after_s is None else after_s
        )
        running = status == "RUNNING" or started + timedelta(seconds=took_s) > self.now
        status = "RUNNING" if running else status
        run = JobExecution(
            job_name=job_name,
            status=status,
            scheduled_for=at,
            trigger=trigger,
            attempt=attempt,
            started_at=started,
            heartbeat_at=self.now if running else started + timedelta(seconds=took_s),
            completed_at=None if running else started + timedelta(seconds=took_s),
            worker_id=self.rng.choice(WORKERS),
            error_message=error,
            result=result,
            params=params,
            dry_run=dry_run,
            requested_by=requested_by,
        )
        self.runs.append(run)
        return run

    def succeed(
        self, job_name: str, at: datetime, low_s: float, high_s: float, **result: int
    ) -> JobExecution:
        """A run that took between `low_s` and `high_s` seconds and returned `result`."""
        return self.add(
            job_name, at, "SUCCESS", took_s=self.rng.uniform(low_s, high_s), result=result
        )


def seed(database: Database, now: datetime) -> Seeded:
    """Three days of a small deployment's history, ending at `now`."""
    history = History(now)
    _exchange_rates(history)
    _crm_contacts(history)
    failed = _renewals(history)
    _warehouse_export(history)
    paused_at = now - timedelta(minutes=65)
    _search_reindex(history, paused_at)
    _invoice_backfill(history)
    with database.transaction() as session:
        session.add_all(JobRow(name=name, created_at=at) for name, at in history.registered.items())
        session.flush()
        # In the order they started, as a real ledger numbers them.
        runs: list[JobExecution] = sorted(history.runs, key=lambda run: run.started_at)
        session.add_all(runs)
        session.flush()
        paused = session.get(JobRow, "reindex-search")
        assert paused is not None  # noqa: S101 - added just above
        paused.paused_at = paused_at
        paused.paused_reason = PAUSE_REASON
        paused.paused_by = f"console:{OPERATOR}"
        return Seeded(job_name="sync-crm-contacts", run_id=failed.id)


def _exchange_rates(history: History) -> None:
    """Every quarter hour, fine but for one timeout, about five hours ago, then retried."""
    rates = history.instants("refresh-exchange-rates", "*/15 * * * *")
    for index, at in enumerate(rates):
        if index != len(rates) - 21:
            history.succeed("refresh-exchange-rates", at, 0.3, 0.9, currencies=31)
            continue
        timeout = "TimeoutError: api.frankfurter.app did not answer within 10 s"
        history.add("refresh-exchange-rates", at, "FAILURE", took_s=10.0, error=timeout)
        history.add(
            "refresh-exchange-rates",
            at,
            "SUCCESS",
            took_s=0.6,
            after_s=71,
            attempt=2,
            result={"currencies": 31},
        )


def _crm_contacts(history: History) -> None:
    """Every ten minutes since this morning's deploy, one going now; a full copy by hand,
    dry run first. (A short history keeps its page, the job screenshot, short.)"""
    history.registered["sync-crm-contacts"] = history.now - timedelta(hours=5, minutes=3)
    contacts = history.instants("sync-crm-contacts", "*/10 * * * *")
    for at in contacts[:-1]:
        copied = history.rng.randint(20, 140)
        history.succeed("sync-crm-contacts", at, 1.2, 3.5, copied=copied)
    history.add("sync-crm-contacts", contacts[-1], "RUNNING")
    by_hand = history.now - timedelta(hours=3, minutes=14, seconds=12)
    for dry_run, took_s, delay in ((True, 38.4, 0), (False, 41.7, 2)):
        history.add(
            "sync-crm-contacts",
            by_hand + timedelta(minutes=delay),
            "SUCCESS",
            took_s=took_s,
            trigger="manual",
            params={"limit": 2000, "full": True},
            dry_run=dry_run,
            requested_by=f"console:{OPERATOR}",
            result={"copied": 1874},
        )


def _renewals(history: History) -> JobExecution:
    """Hourly, failing for the last two hours (twice each, with its retry); the newest
    instant that failed twice, for its page: its error, its attempts, a retry button."""
    renewals = history.instants("charge-renewals", "0 * * * *")
    for at in renewals[:-2]:
        charged = history.rng.randint(5, 30)
        history.succeed("charge-renewals", at, 4.0, 9.0, charged=charged)
    gateway_down = "CardGatewayError: gateway.example.com answered 503 Service Unavailable"
    retried = []
    for at in renewals[-2:]:
        first = history.add("charge-renewals", at, "FAILURE", took_s=30.0, error=gateway_down)
        retry_at = at + timedelta(seconds=330)
        if retry_at > history.now:  # the retry is still to come
            first.retry_at = retry_at
            continue
        retried.append(
            history.add(
                "charge-renewals",
                at,
                "FAILURE",
                took_s=30.0,
                after_s=330,
                attempt=2,
                error=gateway_down,
            )
        )
    return retried[-1]


def _warehouse_export(history: History) -> None:
    """Every two hours, skipped by its pre-check before the nightly snapshot lands."""
    for at in history.instants("export-warehouse", "5 */2 * * *"):
        if at.hour == 2:
            history.add(
                "export-warehouse", at, "SKIPPED", error="the nightly snapshot is not ready"
            )
            continue
        rows = history.rng.randint(30_000, 60_000)
        history.succeed("export-warehouse", at, 60.0, 140.0, rows=rows)


def _search_reindex(history: History, paused_at: datetime) -> None:
    """Every twenty minutes, paused an hour ago: its instants since are skipped."""
    for at in history.instants("reindex-search", "*/20 * * * *"):
        if at >= paused_at:
            history.add("reindex-search", at, "SKIPPED", error=f"paused: {PAUSE_REASON}")
            continue
        products = history.rng.randint(100, 600)
        history.succeed("reindex-search", at, 2.0, 6.0, products=products)


def _invoice_backfill(history: History) -> None:
    """Manual only: a dry run, then the real one, yesterday, from the CLI."""
    asked = history.now - timedelta(hours=26, minutes=40)
    for dry_run, took_s, delay, result in (
        (True, 52.3, 0, {"would_rewrite": 4210}),
        (False, 95.1, 9, {"rewritten": 4210}),
    ):
        history.add(
            "backfill-invoices",
            asked + timedelta(minutes=delay),
            "SUCCESS",
            took_s=took_s,
            trigger="manual",
            params={"since": "2026-01-01", "until": None, "limit": 1000},
            dry_run=dry_run,
            requested_by="ops@web-1",
            result=result,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def served(database_url: str, token: str) -> Iterator[str]:
    """`cronlock serve` on a free port for the demo jobs; its base URL once it is ready."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "JOBS_MODULE": str(JOBS_MODULE),
        "METRICS_HOST": "127.0.0.1",
        "METRICS_PORT": str(port),
        "CONSOLE_TOKEN": token,
        "PYTHONPATH": str(REPO),
    }
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while not _answers(f"{base}/readyz"):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise ScreenshotError(
                        f"`cronlock serve` did not come up:\n{log.read().strip()}"
                    )
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def screenshot(base: str, token: str, seeded: Seeded, out: Path) -> list[Path]:
    """The overview, a job page and a run page, signed in (so the forms show), full page."""
    pages = {
        "console-overview.png": "/",
        "console-job.png": f"/jobs/{seeded.job_name}",
        "console-run.png": f"/runs/{seeded.run_id}",
    }
    saved = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{base}/login")
            page.fill("#token", token.partition(":")[2])
            page.click("button:has-text('Sign in')")
            page.wait_for_url(f"{base}/")
            for name, path in pages.items():
                response = page.goto(f"{base}{path}")
                if response is None or response.status != 200:
                    raise ScreenshotError(
                        f"{path} answered {response.status if response else 'nothing'}"
                    )
                page.screenshot(path=out / name, full_page=True)
                saved.append(out / name)
        finally:
            browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    """Seed, serve, shoot; 2 with one line on stderr when something is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="where the PNGs go")
    args = parser.parse_args(argv)
    try:
        raw_url = os.environ.get("DATABASE_URL", "").strip()
        if not raw_url:
            raise ScreenshotError(
                "set DATABASE_URL to a throwaway database (it gets three days of made-up "
                "history), e.g. createdb cronlock_screenshots, then "
                "DATABASE_URL=postgresql://postgres@127.0.0.1:5432/cronlock_screenshots"
            )
        if not CHROMIUM.exists():
            raise ScreenshotError(
                f"no chromium at {CHROMIUM}: apt-get install chromium (or set CHROMIUM)"
            )
        database_url = normalize_database_url(raw_url)
        database = Database(database_url)
        try:
            upgrade_to_head(database)
            with database.transaction() as session:
                runs = session.scalar(select(func.count()).select_from(JobExecution))
            if runs:
                raise ScreenshotError(
                    f"{database.display_url} already has {runs} runs; the screenshots seed "
                    "their own history into a throwaway database: create an empty one"
                )
            seeded = seed(database, datetime.now(UTC))
        finally:
            database.dispose()
        token = f"{OPERATOR}:{secrets.token_urlsafe(24)}"
        args.out.mkdir(parents=True, exist_ok=True)
        with served(database_url, token) as base:
            saved = screenshot(base, token, seeded, args.out)
    except (ScreenshotError, CronlockError) as exc:
        message = exc.message if isinstance(exc, CronlockError) else str(exc)
        print(f"console_screenshots: {message}", file=sys.stderr)
        return 2
    for path in saved:
        size = path.stat().st_size
        note = "" if size <= MAX_PNG_BYTES else f" (over {MAX_PNG_BYTES // 1024} KB)"
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        print(f"{shown}: {size // 1024} KB{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
