"""Runs with parameters and dry runs: validated before anything is written, stored, honoured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from sqlalchemy import text

from app.config import Settings
from app.core.params import validate_params
from app.job import Job, RunContext
from app.runtime.runner import claim_and_run, claim_request
from app.runtime.worker import utc_now
from app.store.database import Database
from app.store.facade import Store
from tests.integration.cli_helpers import cronlock
from tests.integration.helpers import rows
from tests.integration.test_worker import NOON, make_worker


class Limits(BaseModel):
    limit: int = Field(10, ge=1)
    label: str = "default"


def _scratch(database: Database) -> None:
    with database.transaction() as session:
        session.execute(text("CREATE TABLE scratch (label text)"))


def _labels(database: Database) -> list[str]:
    with database.transaction() as session:
        return list(session.execute(text("SELECT label FROM scratch ORDER BY label")).scalars())


def _writer(ctx: RunContext) -> dict[str, object]:
    with ctx.session() as session, session.begin():
        session.execute(text("INSERT INTO scratch VALUES (:l)"), {"l": ctx.params.label})
    return {"limit": ctx.params.limit, "dry_run": ctx.dry_run}


def _run_by_hand(
    database: Database, job: Job, params: dict, *, dry_run: bool, environ: dict | None = None
):
    settings = Settings.from_env(environ or {})
    store = Store(database)
    store.ensure_jobs([job.name])
    request = claim_request(
        job,
        scheduled_for=utc_now(),
        trigger="manual",
        settings=settings,
        worker_id="test:1",
        wait_for_lock=True,
        params=validate_params(job.name, job.params, params),
        dry_run=dry_run,
        requested_by="tester@host",
    )
    return claim_and_run(store, job, request, settings=settings)


@pytest.mark.parametrize("transactional", [False, True], ids=["session", "transactional"])
def test_a_dry_run_writes_nothing_whatever_the_body_commits(database: Database, transactional):
    _scratch(database)
    job = Job(name="writer", body=_writer, params=Limits, transactional=transactional)
    outcome = _run_by_hand(database, job, {"label": "dry"}, dry_run=True)
    assert outcome.status == "SUCCESS"
    assert _labels(database) == []  # committed by the body, rolled back by the run
    [row] = rows(database)
    assert row.result == {"limit": 10, "dry_run": True}
    with database.transaction() as session:
        stored = session.execute(
            text("SELECT params, dry_run, requested_by FROM job_execution")
        ).one()
    assert tuple(stored) == ({"limit": 10, "label": "dry"}, True, "tester@host")


@pytest.mark.parametrize("transactional", [False, True], ids=["session", "transactional"])
def test_a_real_run_with_params_writes(database: Database, transactional):
    _scratch(database)
    job = Job(name="writer", body=_writer, params=Limits, transactional=transactional)
    outcome = _run_by_hand(database, job, {"label": "real", "limit": "3"}, dry_run=False)
    assert outcome.status == "SUCCESS"
    assert _labels(database) == ["real"]
    assert rows(database)[0].result == {"limit": 3, "dry_run": False}


def test_a_scheduled_run_gets_the_models_defaults(database: Database):
    seen: list[object] = []
    job = Job(
        name="p", body=lambda ctx: seen.append(ctx.params), schedule="* * * * *", params=Limits
    )
    make_worker(database, [job]).tick(NOON)
    assert seen == [Limits()]


def test_a_job_whose_params_have_no_defaults_is_never_scheduled(database: Database):
    class NeedsDay(BaseModel):
        day: str

    ran: list[str] = []
    jobs = [
        Job(
            name="manual",
            body=lambda ctx: ran.append("manual"),
            schedule="* * * * *",
            params=NeedsDay,
        ),
        Job(name="plain", body=lambda ctx: ran.append("plain"), schedule="* * * * *"),
    ]
    make_worker(database, jobs).tick(NOON)
    assert ran == ["plain"]


JOBS = """
from pydantic import BaseModel, Field
from app.job import job

class Limits(BaseModel):
    limit: int = Field(10, ge=1)
    day: str

@job("backfill", schedule="0 0 1 1 *", params=Limits)
def backfill(ctx):
    if ctx.params.limit == 13:
        raise RuntimeError("unlucky")
    return {"limit": ctx.params.limit, "day": ctx.params.day, "dry_run": ctx.dry_run}

JOBS = [backfill]
"""


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    module = tmp_path / "param_jobs.py"
    module.write_text(JOBS)
    return {"DATABASE_URL": db_url, "JOBS_MODULE": str(module)}


def test_cronlock_run_refuses_bad_params_field_by_field_and_writes_nothing(
    env, tmp_path: Path, database: Database
):
    result = cronlock(
        "run", "backfill", "--param", "limit=0", "--param", "colour=red", cwd=tmp_path, **env
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "cronlock run: error: job 'backfill' refused its parameters:"
    assert "  colour='red': unknown parameter; the job takes limit, day" in lines
    assert "  limit='0': Input should be greater than or equal to 1" in lines
    assert "  day=missing: Field required" in lines
    assert rows(database) == []
    with database.transaction() as session:
        assert session.execute(text("SELECT count(*) FROM job")).scalar() == 0


def test_cronlock_run_stores_params_and_dry_run_and_history_shows_them(
    env, tmp_path: Path, database: Database
):
    result = cronlock(
        "run",
        "backfill",
        "--params-json",
        '{"day": "2026-11-01"}',
        "--param",
        "limit=5",
        "--dry-run",
        cwd=tmp_path,
        **env,
    )
    assert result.returncode == 0, result.stderr
    [run] = json.loads(cronlock("history", "--json", cwd=tmp_path, **env).stdout)
    assert run["params"] == {"limit": 5, "day": "2026-11-01"}
    assert run["dry_run"] is True
    assert run["result"] == {"limit": 5, "day": "2026-11-01", "dry_run": True}
    assert "@" in run["requested_by"]
    table = cronlock("history", cwd=tmp_path, **env).stdout
    assert 'dry run; params {"day":"2026-11-01","limit":5}' in table
    listing = cronlock("jobs", cwd=tmp_path, **env).stdout
    assert "manual only" in listing


def test_retry_runs_again_with_the_original_params(env, tmp_path: Path, database: Database):
    failed = cronlock(
        "run", "backfill", "--param", "day=d1", "--param", "limit=13", cwd=tmp_path, **env
    )
    assert failed.returncode == 1
    [run] = rows(database)
    cronlock("retry", str(run.id), cwd=tmp_path, **env)
    with database.transaction() as session:
        attempts = session.execute(
            text("SELECT attempt, params, error_message FROM job_execution ORDER BY attempt")
        ).all()
    assert [(a.attempt, a.params) for a in attempts] == [
        (1, {"limit": 13, "day": "d1"}),
        (2, {"limit": 13, "day": "d1"}),
    ]
    assert attempts[1].error_message == "RuntimeError: unlucky"


def test_the_shipped_backfill_masks_old_secrets_after_a_dry_run(database: Database):
    from app.jobs.redact_stored_secrets import redact_stored_secrets

    secret = "tok-0123456789abcdef"
    with database.transaction() as session:
        session.execute(text("INSERT INTO job (name) VALUES ('old')"))
        for i, (error, result) in enumerate(
            [(f"refused {secret}", None), (None, f'{{"key": "{secret}"}}'), ("fine", None)]
        ):
            session.execute(
                text(
                    "INSERT INTO job_execution (job_name, status, scheduled_for, trigger, attempt,"
                    " worker_id, completed_at, error_message, result) VALUES ('old', 'FAILURE',"
                    " now() - make_interval(mins => :i), 'schedule', 1, 'w', now(), :e, "
                    " CAST(:r AS jsonb))"
                ),
                {"i": i + 1, "e": error, "r": result},
            )

    def run(*, dry_run: bool):
        return _run_by_hand(
            database,
            redact_stored_secrets,
            {"since": "2000-01-01"},
            dry_run=dry_run,
            environ={"PROVIDER_TOKEN": secret},
        )

    def old_rows():
        with database.transaction() as session:
            return session.execute(
                text(
                    "SELECT error_message, result FROM job_execution WHERE job_name = 'old' ORDER BY id"
                )
            ).all()

    dry = run(dry_run=True)
    assert dry.status == "SUCCESS"
    assert [tuple(r) for r in old_rows()] == [
        (f"refused {secret}", None),
        (None, {"key": secret}),
        ("fine", None),
    ]
    real = run(dry_run=False)
    assert real.status == "SUCCESS"
    assert [tuple(r) for r in old_rows()] == [
        ("refused ***", None),
        (None, {"key": "***"}),
        ("fine", None),
    ]
    with database.transaction() as session:
        results = session.execute(
            text(
                "SELECT dry_run, result FROM job_execution WHERE job_name = 'redact-stored-secrets'"
                " ORDER BY id"
            )
        ).all()
    assert results[0].result["would_change"] == 2
    assert results[0].dry_run is True
    assert results[1].result["changed"] == 2
    assert results[1].result["failed"] == 0


def test_a_dry_run_body_that_rolls_back_then_commits_still_writes_nothing(database: Database):
    _scratch(database)

    def fickle(ctx: RunContext) -> None:
        session = ctx.session()
        session.execute(text("INSERT INTO scratch VALUES ('first')"))
        session.rollback()
        session.execute(text("INSERT INTO scratch VALUES ('second')"))
        session.commit()
        session.close()

    outcome = _run_by_hand(database, Job(name="fickle", body=fickle), {}, dry_run=True)
    assert outcome.status == "SUCCESS"
    assert _labels(database) == []
