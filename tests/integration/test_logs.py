"""Log lines as operators and log pipelines see them: JSON events, and no secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.integration.cli_helpers import cronlock
from tests.integration.helpers import register_before_latest

JOBS = """
from app.job import job

@job("leaky", schedule="* * * * *")
def leaky(ctx):
    ctx.logger.info("calling the provider with %s", "tok-%s" % "9f8e7d6c5b4a")
    raise RuntimeError("provider refused key tok-9f8e7d6c5b4a")

@job("fine", schedule="* * * * *")
def fine(ctx):
    return {"ok": 1}

JOBS = [leaky, fine]
"""

RUN_FIELDS = {"event", "job", "run_id", "scheduled_for", "attempt", "worker_id"}


def _worker_once(db_url: str, tmp_path: Path, module: Path, log_format: str):
    names = re.findall(r'@job\("([a-z-]+)", schedule="\* \* \* \* \*"', module.read_text())
    register_before_latest(db_url, dict.fromkeys(names, "* * * * *"))
    return cronlock(
        "worker",
        "--once",
        cwd=tmp_path,
        DATABASE_URL=db_url,
        JOBS_MODULE=str(module),
        LOG_FORMAT=log_format,
    )


def _lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_json_lines_carry_named_events_with_their_fields(db_url: str, tmp_path: Path):
    module = tmp_path / "log_jobs.py"
    module.write_text(JOBS)
    result = _worker_once(db_url, tmp_path, module, "json")
    assert result.returncode == 1
    lines = _lines(result.stderr)
    assert all(line.keys() >= {"time", "level", "logger", "message"} for line in lines)
    by_event = {}
    for line in lines:
        by_event.setdefault(line.get("event"), []).append(line)
    started = {line["job"] for line in by_event["run_started"]}
    assert started == {"leaky", "fine"}
    [succeeded] = by_event["run_succeeded"]
    assert succeeded.keys() >= RUN_FIELDS | {"duration_ms"}
    [failed] = by_event["run_failed"]
    assert failed.keys() >= RUN_FIELDS | {"duration_ms", "error"}
    assert failed["level"] == "ERROR"
    assert failed["error"].startswith("RuntimeError: provider refused key")
    # The body's own line carries its run, as the worker's lines about it do.
    [own] = [line for line in lines if line["logger"] == "cronlock.job.leaky"]
    assert own["run_id"] == failed["run_id"]
    assert own["scheduled_for"] == failed["scheduled_for"]
    assert own["attempt"] == 1
    # One duration, rounded, and the same one `history` shows.
    assert succeeded["duration_ms"] == round(succeeded["duration_ms"], 1)
    history = json.loads(
        cronlock(
            "history", "fine", "--json", cwd=tmp_path, DATABASE_URL=db_url, JOBS_MODULE=str(module)
        ).stdout
    )
    # The same figure, the log's rounded to 0.1 ms (a float's rounding may go either way).
    assert abs(history[0]["duration_s"] * 1000 - succeeded["duration_ms"]) <= 0.05 + 1e-9


def test_secrets_never_reach_the_logs(db_url: str, tmp_path: Path):
    module = tmp_path / "log_jobs.py"
    module.write_text(JOBS)
    with_password = make_url(db_url).set(password="hunter2-db-pass")
    secrets = {
        "PROVIDER_TOKEN": "tok-9f8e7d6c5b4a",
        "WEBHOOK_SECRET": "whsec-0a1b2c3d",
        "SMTP_PASSWORD": "mail-pass-77",
    }
    for log_format in ("json", "text"):
        result = cronlock(
            "run",
            "leaky",
            cwd=tmp_path,
            DATABASE_URL=with_password.render_as_string(hide_password=False),
            JOBS_MODULE=str(module),
            LOG_FORMAT=log_format,
            LOG_LEVEL="DEBUG",
            **secrets,
        )
        assert result.returncode == 1, result.stderr
        output = result.stdout + result.stderr
        for value in [*secrets.values(), "hunter2-db-pass"]:
            assert value not in output
        assert "***" in output  # the body logged the token and raised with it
    unreachable = with_password.set(host="127.0.0.1", port=1, query={})
    refused = cronlock(
        "check",
        cwd=tmp_path,
        DATABASE_URL=unreachable.render_as_string(hide_password=False),
        JOBS_MODULE=str(module),
    )
    assert refused.returncode == 2
    assert "hunter2-db-pass" not in refused.stdout + refused.stderr


BROKEN_PRE_CHECK = """
from app.job import job

def explode(ctx):
    raise LookupError("no such invoice table")

@job("{name}", schedule="* * * * *", pre_check=explode)
def checked(ctx):
    pass

JOBS = [checked]
"""


def test_a_raising_pre_check_is_logged_under_its_job(db_url: str, tmp_path: Path):
    # The worker's claim looks at several jobs at once, outside any one job's
    # scope: the line still names the job, in both formats. One job per format,
    # since the first run settles its instant.
    stderr = {}
    for log_format in ("json", "text"):
        module = tmp_path / f"pre_check_{log_format}.py"
        module.write_text(BROKEN_PRE_CHECK.replace("{name}", f"checked-{log_format}"))
        result = _worker_once(db_url, tmp_path, module, log_format)
        assert result.returncode == 1, result.stderr
        stderr[log_format] = result.stderr
    [raised] = [line for line in _lines(stderr["json"]) if line.get("event") == "pre_check_raised"]
    assert raised["job"] == "checked-json"
    assert "LookupError: no such invoice table" in raised["traceback"]
    [text] = [line for line in stderr["text"].splitlines() if "pre-check of" in line]
    assert "ERROR   [checked-text] pre-check of checked-text raised" in text
