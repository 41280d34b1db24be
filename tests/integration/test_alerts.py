"""Alerting on failure streaks: a real local HTTP server receives the webhooks."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

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
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_one_alert_per_streak_and_one_recovery(db_url: str, tmp_path: Path, webhook):
    url, received = webhook
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
