"""The console's pages in a real browser (Debian's chromium, driven by Playwright).

Each test serves the console from a real `cronlock serve` or `cronlock worker`
process on its own database and port; one browser serves the whole module. The
browser's view is checked against the ledger: what a page claims was done must
be in the database, and what a page refused must not be.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.store.database import Database
from tests.integration.cli_helpers import cli_env
from tests.integration.faults import WorkerProcess, stop, wait_for
from tests.integration.helpers import wait_until

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "install it with `apt-get install chromium` (`make test` does, when run as root)"

LABEL = "browser-test"
SECRET = secrets.token_urlsafe(24)

JOBS = '''
from pydantic import BaseModel, Field

from app.job import job


class Batch(BaseModel):
    limit: int = Field(10, ge=1, description="rows per batch")


@job("heartbeat", schedule="every 1s")
def heartbeat(ctx):
    """Proves the worker is alive, once a second."""
    return {"beat": ctx.scheduled_for.isoformat()}


@job("nightly-report", schedule="0 3 * * *")
def nightly_report(ctx):
    """Mails yesterday's numbers."""
    return {"rows": 3}


@job("backfill", schedule="0 4 * * *", params=Batch)
def backfill(ctx):
    """Copies old rows by hand, a batch at a time."""
    return {"limit": ctx.params.limit, "dry_run": ctx.dry_run}


JOBS = [heartbeat, nightly_report, backfill]
'''


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for the module; the tests skip when it cannot start."""
    if not CHROMIUM.exists():
        pytest.skip(f"the browser tests need chromium at {CHROMIUM}: {INSTALL}")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the browser tests need playwright: `make install`"
    )
    with sync_api.sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        except sync_api.Error as exc:
            first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            pytest.skip(
                f"playwright cannot launch {CHROMIUM} ({first}); check that "
                f"`{CHROMIUM} --headless --version` runs, or reinstall it with "
                "`apt-get install --reinstall chromium`"
            )
        yield launched
        launched.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cronlock:
    """The `cronlock` processes of one test, on its database and jobs module."""

    def __init__(self, folder: Path, db_url: str) -> None:
        self.folder = folder
        self.db_url = db_url
        self.jobs_module = folder / "browser_jobs.py"
        self.jobs_module.write_text(JOBS)
        self.processes: list[WorkerProcess] = []

    def start(self, command: str, **variables: str) -> WorkerProcess:
        """Start `cronlock COMMAND`, its log in a file (a pipe nobody reads would block it)."""
        env = cli_env(DATABASE_URL=self.db_url, JOBS_MODULE=str(self.jobs_module), **variables)
        log_path = self.folder / f"{command}-{len(self.processes)}.log"
        with log_path.open("w") as log:
            process = WorkerProcess(
                [sys.executable, "-m", "app", command],
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )
        process.log_path = log_path
        self.processes.append(process)
        return process

    def console(self, command: str = "serve") -> str:
        """Serve the console from `cronlock COMMAND`; its base URL once it answers."""
        port = _free_port()
        process = self.start(
            command,
            METRICS_PORT=str(port),
            METRICS_HOST="127.0.0.1",
            CONSOLE_TOKEN=f"{LABEL}:{SECRET}",
        )
        # A process that exits (a port taken meanwhile, say) fails here with its log.
        wait_until(
            lambda: process.poll() is not None or "serving the console" in process.log(),
            what=f"`cronlock {command}` to serve the console",
        )
        assert process.poll() is None, process.log()
        return f"http://127.0.0.1:{port}"

    def stop_all(self) -> None:
        """Stop every process this test started, and check each stopped cleanly."""
        failures = []
        for process in self.processes:
            code, log = stop(process)
            if code != 0:
                failures.append(f"{process.args[-1]} exited {code}:\n{log}")
        assert not failures, "\n".join(failures)


@pytest.fixture
def cronlock(tmp_path: Path, db_url: str) -> Iterator[Cronlock]:
    """Starts this test's `cronlock` processes; stops them at its end."""
    started = Cronlock(tmp_path, db_url)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile: no cookies, so no session."""
    fresh = browser.new_context(viewport={"width": 1400, "height": 900})
    fresh.set_default_timeout(10_000)
    yield fresh
    fresh.close()


def sign_in(page: Any, base: str, next_path: str) -> None:
    """Sign in on /login with the console token, landing on `next_path`."""
    page.goto(f"{base}/login?next={next_path}")
    page.fill("#token", SECRET)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}{next_path}")
    assert f"signed in as {LABEL}" in page.inner_text(".flash")


def _runs(database: Database, job_name: str) -> list[Any]:
    with database.transaction() as session:
        return list(
            session.execute(
                text(
                    "SELECT id, status, params, dry_run, requested_by, trigger, error_message "
                    "FROM job_execution WHERE job_name = :n ORDER BY id"
                ),
                {"n": job_name},
            )
        )


def _pause_of(database: Database, job_name: str) -> Any:
    with database.transaction() as session:
        return session.execute(
            text("SELECT paused_at, paused_reason, paused_by FROM job WHERE name = :n"),
            {"n": job_name},
        ).one()


def test_the_overview_lists_the_jobs_and_their_recent_instants(
    context: Any, cronlock: Cronlock, database: Database
):
    base = cronlock.console("worker")
    wait_for(
        database,
        "SELECT count(*) >= 2 FROM job_execution WHERE job_name = 'heartbeat' "
        "AND status = 'SUCCESS'",
    )
    page = context.new_page()
    response = page.goto(f"{base}/")
    assert response is not None
    assert response.status == 200
    for name in ("heartbeat", "nightly-report", "backfill"):
        assert page.locator(f"#job-{name} a strong").inner_text() == name
    row = page.locator("#job-heartbeat")
    assert row.locator(".badge").inner_text() in ("ok", "running")  # it runs every second
    assert "Proves the worker is alive" in row.inner_text()
    assert row.locator(".strip .cell.s-SUCCESS").count() >= 2
    # Rendered, not just present: the stylesheet gives each instant its size and colour.
    cell = row.locator(".strip .cell.s-SUCCESS").first
    box = cell.bounding_box()
    assert box is not None
    assert (box["width"], box["height"]) == (9, 16)
    colour = cell.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(46, 125, 50)"
    assert page.locator("#job-backfill .badge").inner_text() == "no runs yet"


def submit(page: Any, selector: str) -> Any:
    """Click a form's submit button; the response the browser then shows (after redirects)."""
    with page.expect_navigation() as navigation:
        page.click(selector)
    return navigation.value


def test_a_pause_set_on_the_job_page_is_honoured_by_a_separate_worker(
    context: Any, cronlock: Cronlock, database: Database
):
    base = cronlock.console("serve")
    cronlock.start("worker")  # runs the jobs; serves nothing
    wait_for(
        database,
        "SELECT count(*) >= 1 FROM job_execution WHERE job_name = 'heartbeat' "
        "AND status = 'SUCCESS'",
    )
    page = context.new_page()
    sign_in(page, base, "/jobs/heartbeat")
    reason = "swapping db-2's disk <until 10:00>"
    page.fill("#reason", reason)
    shown = submit(page, "#pause-form button[type=submit]")
    assert shown.status == 200
    assert shown.request.redirected_from.method == "POST"
    assert page.url == f"{base}/jobs/heartbeat"
    assert page.inner_text(".flash") == f"heartbeat paused: {reason}"
    assert page.locator("h1 .badge").inner_text() == "paused"
    assert reason in page.locator(".facts .reason").inner_text()
    assert page.locator("#pause-form").count() == 0  # a paused job offers Resume instead
    assert page.get_by_role("button", name="Resume").is_visible()
    _, stored, by = _pause_of(database, "heartbeat")
    assert (stored, by) == (reason, f"console:{LABEL}")

    skipped = f"paused: {reason}"
    wait_for(
        database,
        "SELECT count(*) >= 2 FROM job_execution WHERE job_name = 'heartbeat' "
        "AND status = 'SKIPPED' AND error_message = :m",
        m=skipped,
    )
    # From the first instant the worker found paused, every later one is skipped too.
    with database.transaction() as session:
        since_pause = session.execute(
            text(
                "SELECT status, error_message FROM job_execution WHERE job_name = 'heartbeat' "
                "AND scheduled_for >= (SELECT min(scheduled_for) FROM job_execution "
                "WHERE job_name = 'heartbeat' AND status = 'SKIPPED') ORDER BY scheduled_for"
            )
        ).all()
    assert len(since_pause) >= 2
    assert {tuple(row) for row in since_pause} == {("SKIPPED", skipped)}


def test_a_run_started_from_the_job_page_with_params_shows_its_outcome(
    context: Any, cronlock: Cronlock, database: Database
):
    base = cronlock.console("serve")
    page = context.new_page()
    sign_in(page, base, "/jobs/backfill")
    assert page.input_value("#param-limit") == "10"  # the model's default
    page.fill("#param-limit", "7")
    shown = submit(page, "#run-form button[type=submit]")
    assert shown.status == 200
    assert "/runs/" in page.url
    run_id = int(page.url.rsplit("/", 1)[1])
    assert page.inner_text(".flash").startswith(f"run {run_id} of backfill ")

    wait_for(database, "SELECT status = 'SUCCESS' FROM job_execution WHERE id = :id", id=run_id)
    page.reload()
    status = page.locator("h1 .status")
    assert status.inner_text() == "SUCCESS"
    # A word in the status's colour, not a bar of it (the instants' s-* rules paint cells only).
    assert status.evaluate("e => getComputedStyle(e).backgroundColor") == "rgba(0, 0, 0, 0)"
    facts = page.inner_text(".facts")
    assert f"console:{LABEL}" in facts
    assert '"limit": 7' in page.locator(".facts pre").inner_text()
    assert '"dry_run": false' in page.locator("main > pre").inner_text()
    [row] = _runs(database, "backfill")
    assert (row.id, row.status, row.params, row.dry_run, row.requested_by, row.trigger) == (
        run_id,
        "SUCCESS",
        {"limit": 7},
        False,
        f"console:{LABEL}",
        "manual",
    )

    # Again as a dry run, the field left empty: the model's default applies.
    page.goto(f"{base}/jobs/backfill")
    page.fill("#param-limit", "")
    page.check("input[name=dry_run]")
    submit(page, "#run-form button[type=submit]")
    dry_id = int(page.url.rsplit("/", 1)[1])
    wait_for(database, "SELECT status = 'SUCCESS' FROM job_execution WHERE id = :id", id=dry_id)
    page.reload()
    assert page.locator("h1").get_by_text("dry run").is_visible()
    dry = _runs(database, "backfill")[-1]
    assert (dry.id, dry.params, dry.dry_run) == (dry_id, {"limit": 10}, True)


def test_an_invalid_param_is_shown_at_its_field_and_nothing_is_written(
    context: Any, cronlock: Cronlock, database: Database
):
    base = cronlock.console("serve")
    page = context.new_page()
    sign_in(page, base, "/jobs/backfill")
    page.fill("#param-limit", "abc")
    shown = submit(page, "#run-form button[type=submit]")
    assert shown.status == 400
    assert "job 'backfill' refused its parameters" in page.inner_text("#run-form [role=alert]")
    field = page.locator("#param-limit")
    error = page.locator("#run-form .field-error[data-field=limit]")
    assert "valid integer" in error.inner_text()
    assert field.input_value() == "abc"  # kept, for the operator to correct
    # Next to its field: below it, before the next field's label.
    field_box, error_box = field.bounding_box(), error.bounding_box()
    assert 0 <= error_box["y"] - (field_box["y"] + field_box["height"]) < 40
    assert _runs(database, "backfill") == []


def test_actions_need_a_signed_in_session_and_the_forms_csrf_token(
    context: Any, cronlock: Cronlock, database: Database, browser: Any
):
    base = cronlock.console("serve")
    page = context.new_page()

    # Not signed in: the page offers no action, and a forged pause form is refused.
    page.goto(f"{base}/jobs/heartbeat")
    assert page.locator("#pause-form").count() == 0
    assert page.get_by_role("link", name="Sign in").first.is_visible()
    page.goto(f"{base}/login")  # gives this session a CSRF token, and a form to read it from
    csrf = page.input_value("input[name=csrf]")
    page.evaluate(
        """([action, csrf]) => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = action;
            for (const [name, value] of [["csrf", csrf], ["reason", "forged"]]) {
                const input = document.createElement("input");
                input.type = "hidden";
                input.name = name;
                input.value = value;
                form.append(input);
            }
            const button = document.createElement("button");
            button.id = "forged";
            form.append(button);
            document.body.append(form);
        }""",
        ["/jobs/heartbeat/pause", csrf],
    )
    refused = submit(page, "#forged")
    assert refused.status == 401
    assert "this action needs a token" in page.inner_text("[role=alert]")
    assert page.get_by_role("link", name="Sign in with a token").is_visible()
    assert _pause_of(database, "heartbeat").paused_at is None

    # Signed in, but the form's CSRF token is missing, then wrong.
    sign_in(page, base, "/jobs/heartbeat")
    for tamper in ("e => e.remove()", "e => { e.value = 'not-the-token'; }"):
        page.goto(f"{base}/jobs/heartbeat")
        page.locator("#pause-form input[name=csrf]").evaluate(tamper)
        page.fill("#reason", "tampered")
        refused = submit(page, "#pause-form button[type=submit]")
        assert refused.status == 403
        assert "the form is stale" in page.inner_text("[role=alert]")
        assert _pause_of(database, "heartbeat").paused_at is None

    # A token from another session is as wrong as a made-up one.
    other = browser.new_context()
    try:
        stranger = other.new_page()
        stranger.goto(f"{base}/login")
        foreign = stranger.input_value("input[name=csrf]")
    finally:
        other.close()
    page.goto(f"{base}/jobs/heartbeat")
    page.locator("#pause-form input[name=csrf]").evaluate("(e, t) => { e.value = t; }", foreign)
    page.fill("#reason", "cross-session")
    assert submit(page, "#pause-form button[type=submit]").status == 403
    assert _pause_of(database, "heartbeat").paused_at is None
    assert _runs(database, "heartbeat") == []
