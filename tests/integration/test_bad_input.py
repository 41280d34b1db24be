"""Bad input and a broken deployment get one clear line and exit 2, with nothing written."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.store.database import Database
from tests.integration.cli_helpers import cronlock, start_cronlock
from tests.integration.helpers import rows, wait_until

JOBS = """
from app.job import job

@job("sync", schedule="0 0 1 1 *")
def sync(ctx):
    return None

JOBS = [sync]
"""


@pytest.fixture
def jobs_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    module = tmp_path / "input_jobs.py"
    module.write_text(JOBS)
    return {"DATABASE_URL": db_url, "JOBS_MODULE": str(module)}


def test_a_dotenv_that_is_not_utf8_is_refused(jobs_env, tmp_path: Path, database: Database):
    (tmp_path / ".env").write_bytes(b"CRON_TZ=Europe/Paris\nNOTE=caf\xe9\n")
    result = cronlock("run", "sync", cwd=tmp_path, **jobs_env)
    assert result.returncode == 2
    assert f"{tmp_path / '.env'} is not UTF-8 text" in result.stderr
    assert "Traceback" not in result.stderr
    assert rows(database) == []


def test_a_schema_from_a_newer_cronlock_says_upgrade_not_migrate(
    jobs_env, tmp_path: Path, database: Database
):
    with database.transaction() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '20991231_0099'"))
    for command in (("check",), ("migrate",), ("run", "sync"), ("worker", "--once")):
        result = cronlock(*command, cwd=tmp_path, **jobs_env)
        assert result.returncode == 2, (command, result.stderr)
        assert "migrated by a newer cronlock (revision 20991231_0099)" in result.stderr
        assert "upgrade cronlock" in result.stderr
        assert "Traceback" not in result.stderr
    assert rows(database) == []


def test_check_says_when_the_role_cannot_write(
    jobs_env, tmp_path: Path, database: Database, db_url: str
):
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with database.transaction() as session:
        session.execute(text(f"CREATE ROLE {role} LOGIN"))
        session.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    try:
        reader_url = make_url(db_url).set(username=role, password=None)
        env = {**jobs_env, "DATABASE_URL": reader_url.render_as_string(hide_password=False)}
        result = cronlock("check", cwd=tmp_path, **env)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "can read but not write cronlock's tables" in result.stderr
        assert "job_execution: INSERT" in result.stderr
    finally:
        with database.transaction() as session:
            session.execute(text(f"DROP OWNED BY {role}"))
            session.execute(text(f"DROP ROLE {role}"))


SECONDLY = """
from app.job import job

@job("tick", schedule="* * * * * *")
def tick(ctx):
    return None

JOBS = [tick]
"""


def test_a_worker_whose_tables_are_dropped_says_so_once_and_stops(
    db_url: str, tmp_path: Path, database: Database
):
    module = tmp_path / "secondly_jobs.py"
    module.write_text(SECONDLY)
    worker = start_cronlock(
        "worker", cwd=tmp_path, DATABASE_URL=db_url, JOBS_MODULE=str(module), LOG_FORMAT="json"
    )
    try:
        wait_until(lambda: len(rows(database)) >= 2, what="the worker to run the job")
        with database.transaction() as session:
            session.execute(text("DROP TABLE job_day_counts, job_execution, job, global_pause"))
        _, stderr = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=30)
    assert worker.returncode == 2, stderr
    events = [json.loads(line).get("event") for line in stderr.splitlines() if line.startswith("{")]
    assert events.count("schema_missing") == 1
    assert events.count("database_unavailable") == 0
    [line] = [json.loads(x) for x in stderr.splitlines() if '"schema_missing"' in x]
    assert line["level"] == "CRITICAL"
    assert "cronlock's tables are gone" in line["message"]
    assert "cronlock migrate" in line["message"]


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_a_pause_reason_that_is_empty_or_huge_is_refused(
    jobs_env, tmp_path: Path, database: Database, reason: str
):
    result = cronlock("pause", "sync", "--reason", reason, cwd=tmp_path, **jobs_env)
    assert result.returncode == 2
    assert "give one of 1 to 500" in result.stderr
    with database.transaction() as session:
        assert (
            session.execute(text("SELECT count(*) FROM job WHERE paused_at IS NOT NULL")).scalar()
            == 0
        )
