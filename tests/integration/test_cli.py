"""Every `cronlock` command as an operator runs it, and its bad-input paths (exit 2)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from app.store.database import Database
from tests.integration.cli_helpers import cronlock
from tests.integration.helpers import register_before_latest

JOBS_MODULE = """
from app.job import job

@job("sync-invoices", schedule="* * * * *")
def sync_invoices(ctx):
    '''Pull invoices from the provider.'''
    return {"processed": 10, "failed": 0}

@job("flaky", schedule="0 * * * *")
def flaky(ctx):
    raise RuntimeError("provider answered 503")

JOBS = [sync_invoices, flaky]
"""

UNREACHABLE = "postgresql://cronlock:secret@127.0.0.1:1/cronlock"


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    module = tmp_path / "cli_jobs.py"
    module.write_text(JOBS_MODULE)
    return {"DATABASE_URL": db_url, "JOBS_MODULE": str(module)}


def run(tmp_path: Path, env: dict[str, str], *args: str, **more: str):
    return cronlock(*args, cwd=tmp_path, **{**env, **more})


def test_run_a_job_now(tmp_path, env, database: Database):
    result = run(tmp_path, env, "run", "sync-invoices")
    assert result.returncode == 0, result.stderr
    assert "of sync-invoices: SUCCESS" in result.stdout
    assert "[sync-invoices] started run" in result.stderr

    history = json.loads(run(tmp_path, env, "history", "--json").stdout)
    assert [(h["job"], h["status"], h["trigger"], h["result"]) for h in history] == [
        ("sync-invoices", "SUCCESS", "manual", {"processed": 10, "failed": 0})
    ]


def test_run_a_failing_job_exits_1(tmp_path, env):
    result = run(tmp_path, env, "run", "flaky")
    assert result.returncode == 1
    assert "FAILURE" in result.stdout
    assert "provider answered 503" in result.stdout


def test_run_a_disabled_job_needs_force(tmp_path, env):
    refused = run(tmp_path, env, "run", "sync-invoices", SYNC_INVOICES_ENABLED="false")
    assert refused.returncode == 2
    assert "disabled by SYNC_INVOICES_ENABLED" in refused.stderr
    assert "--force" in refused.stderr
    forced = run(tmp_path, env, "run", "sync-invoices", "--force", SYNC_INVOICES_ENABLED="false")
    assert forced.returncode == 0, forced.stderr


def test_worker_once_runs_what_is_due_and_reports_failure(tmp_path, env):
    register_before_latest(
        env["DATABASE_URL"], {"sync-invoices": "* * * * *", "flaky": "0 * * * *"}
    )
    result = run(tmp_path, env, "worker", "--once")
    assert result.returncode == 1  # flaky failed
    assert "[sync-invoices] run" in result.stderr
    assert "[flaky] run" in result.stderr
    again = run(tmp_path, env, "worker", "--once", FLAKY_ENABLED="false")
    assert again.returncode == 0, again.stderr


JOBS_HEADERS = [
    "JOB",
    "SCHEDULE",
    "ENABLED",
    "NEXT",
    "LAST RUN",
    "RUNS",
    "FAILED",
    "AVG",
    "P95",
    "FAILING",
    "LAST SUCCESS",
    "PAUSED",
]


def _columns(table: str) -> list[dict[str, str]]:
    """Slice the fixed-width `cronlock jobs` table by its header's column positions."""
    header, *lines = table.splitlines()
    starts = [header.index(name) for name in JOBS_HEADERS]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [
        {name: line[a:b].strip() for name, (a, b) in zip(JOBS_HEADERS, bounds, strict=True)}
        for line in lines
        if line and not line.startswith("(")
    ]


def test_jobs_lists_schedule_next_last_run_and_record(tmp_path, env):
    run(tmp_path, env, "run", "sync-invoices")
    run(tmp_path, env, "run", "flaky")
    run(tmp_path, env, "run", "flaky")
    result = run(tmp_path, env, "jobs", FLAKY_ENABLED="no")
    assert result.returncode == 0, result.stderr
    sync, flaky = _columns(result.stdout)
    assert (sync["JOB"], sync["SCHEDULE"], sync["ENABLED"]) == ("sync-invoices", "* * * * *", "yes")
    assert sync["LAST RUN"].startswith("SUCCESS")
    assert (sync["RUNS"], sync["FAILED"], sync["FAILING"], sync["PAUSED"]) == ("1", "0", "0", "no")
    assert sync["AVG"].endswith("s")
    assert sync["P95"].endswith("s")
    assert sync["LAST SUCCESS"] != "-"
    assert (flaky["ENABLED"], flaky["NEXT"]) == ("no", "-")
    assert (flaky["RUNS"], flaky["FAILED"], flaky["FAILING"], flaky["LAST SUCCESS"]) == (
        "2",
        "2",
        "2",
        "-",
    )
    assert "over the last 30 days" in result.stdout


def test_history_filters(tmp_path, env):
    run(tmp_path, env, "run", "sync-invoices")
    run(tmp_path, env, "run", "sync-invoices")
    run(tmp_path, env, "run", "flaky")
    failures = json.loads(run(tmp_path, env, "history", "--status", "failure", "--json").stdout)
    assert [f["job"] for f in failures] == ["flaky"]
    latest = json.loads(
        run(tmp_path, env, "history", "sync-invoices", "--limit", "1", "--json").stdout
    )
    assert len(latest) == 1
    table = run(tmp_path, env, "history")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "JOB", "STATUS"]
    assert len(table.stdout.splitlines()) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["history", "--limit", "0"], "not a positive whole number"),
        (["history", "--status", "DONE"], "not a status"),
        (["next", "flaky", "-n", "100000"], "is more than 1000 instants"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(tmp_path, env, args, message):
    result = run(tmp_path, env, *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_unknown_job_exits_2_with_a_suggestion(tmp_path, env):
    for args in (["run", "sync-invoice"], ["history", "sync-invoice"]):
        result = run(tmp_path, env, *args)
        assert result.returncode == 2
        assert "no job named 'sync-invoice'" in result.stderr
        assert "did you mean sync-invoices" in result.stderr


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"SYNC_INVOICES_SCHEDULE": "61 * * * *"}, "SYNC_INVOICES_SCHEDULE='61 * * * *'"),
        ({"CRON_SCHEDULE": "every day"}, "CRON_SCHEDULE='every day'"),
        ({"FLAKY_ENABLED": "perhaps"}, "FLAKY_ENABLED='perhaps' is not a boolean"),
        ({"CRON_TZ": "Moon/Base"}, "CRON_TZ='Moon/Base'"),
        ({"JOBS_MODULE": "no_such_jobs_module"}, "JOBS_MODULE='no_such_jobs_module'"),
        ({"DATABASE_URL": "mysql://u@h/d"}, "cronlock needs PostgreSQL"),
        ({"DATABASE_URL": "postgresql://u@127.0.0.1:port/d"}, "DATABASE_URL is not a database"),
        ({"SYNC_INVOICES_SCHEDULE": "0 0 31 2 *"}, "'0 0 31 2 *' never fires"),
        ({"SYNC_INVOICES_SCHEDULE": "every 3000000d"}, "longer than a year"),
        (
            {"STALE_JOB_THRESHOLD_SECONDS": "inf"},
            "STALE_JOB_THRESHOLD_SECONDS='inf' is not a positive number of seconds in ASCII digits",
        ),
        (
            {"SHUTDOWN_GRACE_SECONDS": "1e12"},
            "SHUTDOWN_GRACE_SECONDS='1e12' is not a positive number of seconds in ASCII digits",
        ),
        ({"JOB_HISTORY_RETENTION_DAYS": "1000000000"}, "JOB_HISTORY_RETENTION_DAYS="),
        ({"HEARTBEAT_INTERVAL_SECONDS": "21"}, "is more than a third of STALE_JOB_THRESHOLD"),
        ({"METRICS_PORT": "0"}, "METRICS_PORT='0' is not a port"),
        ({"ALERT_WEBHOOK_URL": "http://"}, "ALERT_WEBHOOK_URL='http://' is not an http(s) URL"),
    ],
)
def test_bad_configuration_exits_2_naming_the_variable(tmp_path, env, database, variables, message):
    result = run(tmp_path, env, "worker", **variables)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    with database.transaction() as session:
        assert session.execute(text("SELECT count(*) FROM job")).scalar() == 0


def test_a_metrics_port_in_use_exits_2_before_anything_is_written(tmp_path, env, database):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run(tmp_path, env, "worker", METRICS_PORT=port, METRICS_HOST="127.0.0.1")
    assert result.returncode == 2, result.stderr
    assert f"cannot serve METRICS_PORT={port} on METRICS_HOST='127.0.0.1'" in result.stderr
    assert "Traceback" not in result.stderr
    with database.transaction() as session:
        assert session.execute(text("SELECT count(*) FROM job")).scalar() == 0


def test_check_and_jobs_refuse_bad_configuration_too(tmp_path, env):
    for command in ("check", "jobs"):
        result = run(tmp_path, env, command, SYNC_INVOICES_SCHEDULE="every fortnight")
        assert result.returncode == 2
        assert "SYNC_INVOICES_SCHEDULE='every fortnight'" in result.stderr


def test_unreachable_database_exits_2_without_a_traceback_or_password(tmp_path, env):
    for command in (["worker"], ["check"], ["run", "flaky"], ["migrate"]):
        result = run(tmp_path, env, *command, DATABASE_URL=UNREACHABLE)
        assert result.returncode == 2
        assert (
            "cannot reach the database at postgresql+psycopg://cronlock:***@127.0.0.1:1"
            in result.stderr
        )
        assert "Traceback" not in result.stderr
        assert "secret" not in result.stderr


@pytest.mark.parametrize("args", [("-v", "check"), ("check", "-v")])
def test_verbose_adds_the_traceback_before_or_after_the_command(tmp_path, env, args):
    result = run(tmp_path, env, *args, DATABASE_URL=UNREACHABLE)
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_check_without_a_database_url_writes_nothing(tmp_path, env):
    embedded = {name: value for name, value in env.items() if name != "DATABASE_URL"}
    result = run(tmp_path, embedded, "check", CRONLOCK_DATA_DIR=str(tmp_path / "pg"))
    assert result.returncode == 0, result.stderr
    assert "skip  database: DATABASE_URL is unset" in result.stdout
    assert not (tmp_path / "pg").exists()


def test_schema_not_at_head_is_refused_then_migrated(tmp_path, env, empty_db_url):
    env = {**env, "DATABASE_URL": empty_db_url}
    refused = run(tmp_path, env, "worker", "--once")
    assert refused.returncode == 2
    assert "run `cronlock migrate`" in refused.stderr
    empty = Database(empty_db_url)
    try:
        assert inspect(empty.engine).get_table_names() == []
    finally:
        empty.dispose()
    check = run(tmp_path, env, "check")
    assert check.returncode == 2
    assert "ok    database reachable" in check.stdout

    migrated = run(tmp_path, env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "upgraded from empty to" in migrated.stdout
    assert "already at" in run(tmp_path, env, "migrate").stdout
    check = run(tmp_path, env, "check")
    assert check.returncode == 0, check.stderr
    assert "ok    schema at head" in check.stdout


def test_dotenv_is_read_and_the_real_environment_wins(tmp_path, env):
    (tmp_path / ".env").write_text(f"DATABASE_URL={env['DATABASE_URL']}\nFLAKY_ENABLED=false\n")
    from_file = cronlock("jobs", cwd=tmp_path, JOBS_MODULE=env["JOBS_MODULE"])
    assert from_file.returncode == 0, from_file.stderr
    assert _columns(from_file.stdout)[1]["ENABLED"] == "no"
    overridden = cronlock(
        "jobs", cwd=tmp_path, JOBS_MODULE=env["JOBS_MODULE"], FLAKY_ENABLED="true"
    )
    assert _columns(overridden.stdout)[1]["ENABLED"] == "yes"


def test_a_bad_value_from_dotenv_says_it_came_from_there(tmp_path, env):
    env_file = tmp_path / ".env"
    env_file.write_text(f"DATABASE_URL={env['DATABASE_URL']}\nFLAKY_ENABLED=maybe\n")
    from_file = cronlock("jobs", cwd=tmp_path, JOBS_MODULE=env["JOBS_MODULE"])
    assert from_file.returncode == 2
    assert "FLAKY_ENABLED='maybe' is not a boolean" in from_file.stderr
    assert f"(FLAKY_ENABLED set in {env_file})" in from_file.stderr

    env_file.write_text(f"DATABASE_URL={env['DATABASE_URL']}\n")
    from_environment = run(tmp_path, env, "jobs", FLAKY_ENABLED="maybe")
    assert from_environment.returncode == 2
    assert "FLAKY_ENABLED='maybe'" in from_environment.stderr
    assert "set in" not in from_environment.stderr


def test_a_typo_in_a_job_variable_is_warned_about(tmp_path, env):
    result = run(tmp_path, env, "jobs", SYNC_INVOCES_ENABLED="false")
    assert result.returncode == 0
    assert "SYNC_INVOCES_ENABLED names no registered job" in result.stderr


def test_embedded_default_when_database_url_is_unset(tmp_path, env):
    data_dir = tmp_path / "data"
    common = {"JOBS_MODULE": env["JOBS_MODULE"], "CRONLOCK_DATA_DIR": str(data_dir)}
    result = cronlock("run", "sync-invoices", cwd=tmp_path, LOG_LEVEL="DEBUG", **common)
    assert result.returncode == 0, result.stderr
    assert "using the embedded PostgreSQL" in result.stderr
    assert "migrated the embedded database" in result.stderr
    assert "[sync-invoices] run" in result.stderr
    assert (data_dir / "pgdata" / "PG_VERSION").is_file()
    # A command that prints a table keeps that line out of its output (DEBUG) ...
    listing = cronlock("jobs", cwd=tmp_path, **common)
    assert listing.returncode == 0, listing.stderr
    assert "using the embedded PostgreSQL" not in listing.stderr + listing.stdout
    # ... and the worker, which serves for its lifetime, says it at INFO.
    worker = cronlock("worker", "--once", cwd=tmp_path, FLAKY_ENABLED="0", **common)
    assert worker.returncode == 0, worker.stderr
    assert "using the embedded PostgreSQL" in worker.stderr


def test_next_previews_instants_and_marks_dst_shifts(tmp_path):
    module = tmp_path / "dst_jobs.py"
    module.write_text(
        "from app.job import job\n"
        "@job('weekly', schedule='30 2 * * 0')\n"
        "def weekly(ctx):\n    pass\n"
        "JOBS = [weekly]\n"
    )
    result = cronlock(
        "next", "weekly", "-n", "60", cwd=tmp_path, JOBS_MODULE=str(module), CRON_TZ="Europe/Berlin"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "weekly: 30 2 * * 0 (Europe/Berlin)"
    assert len(lines) == 61
    shifts = [line for line in lines if "clocks change" in line]
    assert len(shifts) >= 2  # one spring, one autumn within 60 weeks
    spring = next(line for line in shifts if "UTC+0100 to UTC+0200" in line)
    assert " 03:00:00+02:00" in spring  # 02:30 does not exist that night
    assert cronlock("next", "weakly", cwd=tmp_path, JOBS_MODULE=str(module)).returncode == 2
