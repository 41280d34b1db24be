"""Alerting on failure streaks: a real local HTTP server receives the webhooks."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import text

from app.config import Settings
from app.job import Job, RunContext
from app.ops import alerts, metrics
from app.runtime.runner import claim_and_run, claim_request
from app.store.claiming import ensure_jobs
from app.store.database import Database
from app.store.facade import Store
from tests.integration.cli_helpers import cronlock

JOBS = """
import os
from app.job import job

@job("flaky", schedule="0 0 1 1 *")
def flaky(ctx):
    if not os.path.exists(os.environ["FIXED_FLAG"]):
        raise RuntimeError("provider down")

JOBS = [flaky]
"""


@pytest.fixture
def webhook():
    """A local endpoint: its URL, the payloads it received, and the statuses to answer
    (in order, then 204; a test may append to the list before any POST)."""
    received: list[dict] = []
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(statuses.pop(0) if statuses else 204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield url, received, statuses
    server.shutdown()
    server.server_close()


def test_one_alert_per_streak_and_one_recovery(db_url: str, tmp_path: Path, webhook):
    url, received, _ = webhook
    module = tmp_path / "alert_jobs.py"
    module.write_text(JOBS)
    flag = tmp_path / "fixed"
    env = {
        "DATABASE_URL": db_url,
        "JOBS_MODULE": str(module),
        "FIXED_FLAG": str(flag),
        "ALERT_AFTER_FAILURES": "3",
        "ALERT_WEBHOOK_URL": url,
    }
    outputs = [cronlock("run", "flaky", cwd=tmp_path, **env) for _ in range(4)]
    assert [o.returncode for o in outputs] == [1, 1, 1, 1]
    assert "CRITICAL" in outputs[2].stderr
    assert "failed 3 times in a row" in outputs[2].stderr
    assert "CRITICAL" not in outputs[3].stderr
    [failing] = received
    assert failing["event"] == "job_failing"
    assert (failing["job"], failing["failures"]) == ("flaky", 3)
    assert failing["last_error"] == "RuntimeError: provider down"
    assert len(failing["run_ids"]) == 3

    flag.write_text("fixed")
    assert cronlock("run", "flaky", cwd=tmp_path, **env).returncode == 0
    assert cronlock("run", "flaky", cwd=tmp_path, **env).returncode == 0
    assert [r["event"] for r in received] == ["job_failing", "job_recovered"]


def test_a_failing_webhook_never_disturbs_the_run(db_url: str, tmp_path: Path):
    module = tmp_path / "alert_jobs.py"
    module.write_text(JOBS)
    env = {
        "DATABASE_URL": db_url,
        "JOBS_MODULE": str(module),
        "FIXED_FLAG": str(tmp_path / "never"),
        "ALERT_AFTER_FAILURES": "1",
        "ALERT_WEBHOOK_URL": "http://127.0.0.1:1/hook",
    }
    result = cronlock("run", "flaky", cwd=tmp_path, **env)
    assert result.returncode == 1
    assert "FAILURE" in result.stdout
    [warning] = [line for line in result.stderr.splitlines() if "alert webhook failed" in line]
    assert "WARNING" in warning


def test_the_streak_gauge_counts_failures_of_every_replica(database: Database):
    """After its FAILURE a replica reads the streak from the table, so others' failures count."""
    job = Job(name="streaky", body=_provider_down, schedule="* * * * *")
    ensure_jobs(database, [job.name])
    settings = Settings.from_env({})
    first = datetime(2026, 3, 1, tzinfo=UTC)

    def fail_here(minute: int) -> None:
        instant = first + timedelta(minutes=minute)
        request = claim_request(
            job, scheduled_for=instant, trigger="schedule", settings=settings, worker_id="here:1"
        )
        claim_and_run(Store(database), job, request, settings=settings)

    fail_here(0)
    with database.autocommit() as conn:  # another replica's failure, never seen by this process
        conn.execute(
            text(
                "INSERT INTO job_execution (job_name, status, scheduled_for, trigger, worker_id,"
                " completed_at, error_message) VALUES ('streaky', 'FAILURE', :at, 'schedule',"
                " 'elsewhere:2', now(), 'provider down')"
            ),
            {"at": first + timedelta(minutes=1)},
        )
    fail_here(2)
    assert metrics.CONSECUTIVE_FAILURES.labels(job_name="streaky")._value.get() == 3
    assert metrics.LAST_FAILURE.labels(job_name="streaky")._value.get() > first.timestamp()


def _provider_down(_: RunContext) -> None:
    raise RuntimeError("provider down")


def _pre_check_down(_ctx) -> str | None:
    raise RuntimeError("cannot read the ledger")


def test_failures_of_a_pre_check_open_the_alert_too(database: Database, caplog):
    """A pre-check that raises records FAILURE: it counts towards the streak like any other."""
    job = Job(
        name="checked",
        body=lambda ctx: None,
        schedule="* * * * *",
        pre_check=_pre_check_down,
    )
    ensure_jobs(database, [job.name])
    settings = Settings.from_env({"ALERT_AFTER_FAILURES": "2"})
    first = datetime(2026, 3, 1, tzinfo=UTC)
    for minute in range(2):
        request = claim_request(
            job,
            scheduled_for=first + timedelta(minutes=minute),
            trigger="schedule",
            settings=settings,
            worker_id="here:1",
        )
        claim_and_run(Store(database), job, request, settings=settings)
    failing = [r for r in caplog.records if getattr(r, "event", None) == "job_failing"]
    assert [r.job for r in failing] == ["checked"]
    with database.autocommit() as conn:
        alerted = conn.execute(text("SELECT alerted_at FROM job WHERE name = 'checked'"))
        assert alerted.scalar_one() is not None


def test_webhooks_are_retried_and_arrive_in_order(webhook):
    """The first POST meets a 503: it is tried again, and the second message waits its turn."""
    url, received, statuses = webhook
    statuses.append(503)
    settings = Settings.from_env({"ALERT_WEBHOOK_URL": url})
    alerts._post(settings, {"event": "job_failing", "job": "a"})
    alerts._post(settings, {"event": "job_recovered", "job": "a"})
    alerts.flush()
    assert [r["event"] for r in received] == ["job_failing", "job_failing", "job_recovered"]
