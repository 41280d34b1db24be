"""The console's JSON API against a real database: every route, its answers and its errors.

Most tests call the app in process (`TestClient`) on a `Console` built as the worker
builds it; one runs the real `cronlock serve` over a socket. A job whose body waits
on a gate the test opens makes "while it runs" deterministic. A fuzz from the
OpenAPI document checks that no request, valid or not, gets a 5xx.
"""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text

from app.config import Settings
from app.console.guards import MAX_BODY_BYTES
from app.console.schemas import MAX_REASON_CHARS
from app.console.server import Console
from app.core.stats import bucket_middle_ms, bucket_of
from app.core.tokens import parse_tokens
from app.job import Job, RunContext
from app.ops.health import Probes
from app.registry import JobRegistry, configure
from app.runtime.worker import utc_now
from app.store.database import Database
from app.store.facade import Store
from tests.integration.cli_helpers import cli_env
from tests.integration.helpers import wait_until

with warnings.catch_warnings():
    # Starlette 1.x asks for the httpx2 fork and warns once on import with httpx, which
    # the test client still drives; `filterwarnings = error` would fail the module on it.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

OPS_SECRET = "ops-secret-0123456789abcdef"
BOT_SECRET = "bot-secret-0123456789abcdef"
READ_SECRET = "read-secret-0123456789abcdef"
WRITE_TOKENS = f"ops:{OPS_SECRET},deploy-bot:{BOT_SECRET}"
READ_TOKENS = f"dashboard:{READ_SECRET}"
AS_OPS = {"Authorization": f"Bearer {OPS_SECRET}"}
AS_BOT = {"Authorization": f"Bearer {BOT_SECRET}"}
AS_READER = {"Authorization": f"Bearer {READ_SECRET}"}
YEARLY = "0 0 1 1 *"


class Limits(BaseModel):
    limit: int = Field(10, ge=1, le=1000)
    label: str = Field("x", max_length=40)


class Day(BaseModel):
    day: date


def _jobs(gate: threading.Event, daily: str) -> list[Job]:
    """The deployment most tests use; `gated` runs until the test sets `gate`."""

    def gated(ctx: RunContext) -> dict[str, Any]:
        if not gate.wait(30):  # bounds a hang only: the test sets the gate
            raise TimeoutError("the test never opened the gate")
        return {"label": ctx.params.label, "limit": ctx.params.limit, "dry_run": ctx.dry_run}

    def flaky(ctx: RunContext) -> None:
        raise RuntimeError(f"down ({ctx.params.label})")

    return [
        Job(name="daily", body=lambda ctx: {"rows": 3}, schedule=daily, description="the report"),
        Job(name="gated", body=gated, schedule=YEARLY, params=Limits),
        Job(name="flaky", body=flaky, schedule=YEARLY, params=Limits),
        Job(name="off", body=lambda ctx: None, schedule=YEARLY),
        Job(name="backfill", body=lambda ctx: {"day": str(ctx.params.day)}, params=Day),
    ]


def far_hour() -> int:
    """An hour of the day twelve hours from now: `daily`'s instants stay put while a test runs."""
    return (utc_now().hour + 12) % 24


@dataclass
class Api:
    """A console on this test's database, and what its tests reach into."""

    console: Console
    client: TestClient
    store: Store
    database: Database
    gate: threading.Event
    daily: str

    def past_instants(self, count: int) -> list[datetime]:
        """`daily`'s latest `count` instants, newest first."""
        schedule = self.console.reads.configured("daily").schedule
        return list(itertools.islice(schedule.walk(utc_now(), forward=False), count))

    def settle(self) -> None:
        """Wait for the runs started through the console to end."""
        assert self.console.background.wait(30) == []


def settings_for(db_url: str, *, write: str = WRITE_TOKENS, read: str = "") -> Settings:
    return Settings(
        database_url=db_url,
        console_tokens=parse_tokens("CONSOLE_TOKEN", write),
        console_read_tokens=parse_tokens("CONSOLE_READ_TOKEN", read),
        job_overrides={"OFF_ENABLED": "false"},
        shutdown_grace_s=5,
    )


@pytest.fixture
def make_api(db_url: str) -> Iterator[Any]:
    """Build consoles on this test's database (each closed at the end)."""
    built: list[Api] = []

    def make(*, write: str = WRITE_TOKENS, read: str = "", jobs: list[Job] | None = None) -> Api:
        settings = settings_for(db_url, write=write, read=read)
        gate = threading.Event()
        daily = f"0 {far_hour()} * * *"
        registry = JobRegistry(jobs if jobs is not None else _jobs(gate, daily))
        database = Database(db_url)
        store = Store(database)
        store.ensure_jobs(registry.names)
        console = Console(
            store,
            registry,
            configure(registry, settings),
            settings,
            Probes(database, None, max_silence_s=0),
        )
        client = TestClient(console.app, raise_server_exceptions=False)
        built.append(Api(console, client, store, database, gate, daily))
        return built[-1]

    yield make
    for api in built:
        api.gate.set()
        api.client.close()
        api.console.close()
        api.database.dispose()


@pytest.fixture
def api(make_api: Any) -> Api:
    """A console with write tokens (ops, deploy-bot) and open reads."""
    made: Api = make_api()
    return made


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error body of `response`, checked: its status, and JSON `{error, fields}` only."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "fields"}
    assert isinstance(body["error"], str)
    assert body["error"]
    assert isinstance(body["fields"], list)
    for field in body["fields"]:
        assert set(field) == {"field", "value", "message"}
    return body


def fields_of(body: dict[str, Any]) -> dict[str, str]:
    """An error's refused fields: field -> message."""
    return {field["field"]: field["message"] for field in body["fields"]}


def insert_run(
    database: Database,
    job_name: str,
    status: str,
    scheduled_for: datetime,
    *,
    took_ms: float = 10,
    attempt: int = 1,
    trigger: str = "schedule",
    error: str | None = None,
) -> int:
    """Record a run as the worker would have, ended now after `took_ms`; its id."""
    with database.transaction() as session:
        return int(
            session.execute(
                text(
                    "INSERT INTO job_execution (job_name, status, scheduled_for, trigger, attempt,"
                    " worker_id, started_at, heartbeat_at, completed_at, error_message) VALUES"
                    " (:job, :status, :at, :trigger, :attempt, 'test:1',"
                    " now() - make_interval(secs => :took / 1000.0), now(),"
                    " CASE WHEN :status = 'RUNNING' THEN NULL ELSE now() END, :error)"
                    " RETURNING id"
                ),
                {
                    "job": job_name,
                    "status": status,
                    "at": scheduled_for,
                    "trigger": trigger,
                    "attempt": attempt,
                    "took": took_ms,
                    "error": error,
                },
            ).scalar_one()
        )


def register_at(database: Database, job_name: str, moment: datetime) -> None:
    """Pretend the job was first deployed at `moment`."""
    with database.transaction() as session:
        session.execute(
            text("UPDATE job SET created_at = :t WHERE name = :n"), {"t": moment, "n": job_name}
        )


def run_count(database: Database) -> int:
    with database.transaction() as session:
        return int(session.execute(text("SELECT count(*) FROM job_execution")).scalar_one())


def parsed(moment: str) -> datetime:
    return datetime.fromisoformat(moment)


# -- reads ---------------------------------------------------------------------------


@pytest.fixture
def history(api: Api) -> dict[str, Any]:
    """`daily` deployed before its 4th latest instant, with a record of each kind.

    p3 SUCCESS; p2 FAILURE then SUCCESS (retried); p1 no scheduled run (a manual run
    that instant is not its run); p0 FAILURE twice; p4, before deployment, MISSED.
    """
    p0, p1, p2, p3, p4 = api.past_instants(5)
    register_at(api.database, "daily", p3 - timedelta(hours=1))
    ids = {
        "p4": insert_run(api.database, "daily", "MISSED", p4, took_ms=0),
        "p3": insert_run(api.database, "daily", "SUCCESS", p3, took_ms=100),
        "p2a": insert_run(api.database, "daily", "FAILURE", p2, took_ms=200, error="blip"),
        "p2b": insert_run(api.database, "daily", "SUCCESS", p2, took_ms=300, attempt=2),
        "manual": insert_run(
            api.database, "daily", "SKIPPED", p1 + timedelta(minutes=1), trigger="manual"
        ),
        "p0a": insert_run(api.database, "daily", "FAILURE", p0, took_ms=400, error="down"),
        "p0b": insert_run(
            api.database, "daily", "FAILURE", p0, took_ms=500, attempt=2, error="down again"
        ),
    }
    return {"instants": [p0, p1, p2, p3, p4], "ids": ids}


def test_the_job_list_shows_each_jobs_schedule_state_and_record(api: Api, history: dict[str, Any]):
    response = api.client.get("/api/jobs")
    assert response.status_code == 200
    listing = response.json()
    assert listing["read_only"] is False
    assert listing["paused_all"] is None
    assert [job["name"] for job in listing["jobs"]] == [
        "daily",
        "gated",
        "flaky",
        "off",
        "backfill",
    ]
    jobs = {job["name"]: job for job in listing["jobs"]}

    daily = jobs["daily"]
    ids = history["ids"]
    assert daily["schedule"] == api.daily
    assert daily["description"] == "the report"
    assert daily["time_zone"] == "UTC"
    assert daily["enabled"] is True
    assert daily["manual_only"] is False
    assert daily["paused"] is None
    now = utc_now()
    upcoming = [parsed(moment) for moment in daily["next_instants"]]
    assert len(upcoming) == 3
    assert now < upcoming[0] < now + timedelta(days=1)
    assert [b - a for a, b in itertools.pairwise(upcoming)] == [timedelta(days=1)] * 2
    assert all(moment.hour == int(api.daily.split()[1]) for moment in upcoming)
    assert daily["last_run"]["id"] == ids["p0b"]
    assert daily["last_run"]["status"] == "FAILURE"
    assert daily["last_run"]["error"] == "down again"
    assert daily["last_success"]["id"] == ids["p2b"]
    assert daily["failures_in_a_row"] == 2
    assert daily["stats"] == {
        "window_days": 30,
        "runs": 5,
        "failures": 3,
        "skipped": 1,
        "missed": 1,
        "average_ms": 300.0,
        "p95_ms": round(bucket_middle_ms(bucket_of(500)), 1),
    }
    # Oldest first, from the deployment on: p3, p2 (its latest attempt), p1, p0.
    assert daily["recent"] == ["SUCCESS", "SUCCESS", "unaccounted", "FAILURE"]

    gated = jobs["gated"]
    assert gated["recent"] == []  # deployed just now: no instant of it has passed
    assert gated["last_run"] is None
    assert gated["last_success"] is None
    assert gated["failures_in_a_row"] == 0
    assert gated["stats"]["runs"] == 0
    assert gated["stats"]["average_ms"] is None
    assert gated["stats"]["p95_ms"] is None
    assert [parsed(m).year for m in gated["next_instants"]] == [now.year + n for n in (1, 2, 3)]
    assert jobs["off"]["enabled"] is False
    assert jobs["backfill"]["manual_only"] is True
    assert jobs["backfill"]["next_instants"] == []
    assert jobs["backfill"]["recent"] == []


def test_a_job_shows_its_params_schema_and_options(api: Api):
    gated = api.client.get("/api/jobs/gated").json()
    assert gated["name"] == "gated"
    assert gated["params_schema"]["properties"]["limit"]["maximum"] == 1000
    assert gated["params_schema"]["properties"]["label"]["default"] == "x"
    assert gated["retries"] == 0
    assert gated["timeout_s"] is None
    assert gated["transactional"] is False
    assert gated["schedule"] == YEARLY
    backfill = api.client.get("/api/jobs/backfill").json()
    assert backfill["params_schema"]["required"] == ["day"]
    assert api.client.get("/api/jobs/daily").json()["params_schema"] is None


def test_an_unknown_job_is_a_404_on_every_route(api: Api):
    for method, path in [
        ("GET", "/api/jobs/nope"),
        ("GET", "/api/jobs/nope/runs"),
        ("GET", "/api/jobs/nope/instants"),
        ("POST", "/api/jobs/nope/runs"),
        ("POST", "/api/jobs/nope/resume"),
    ]:
        body = error_of(api.client.request(method, path, headers=AS_OPS), 404)
        assert "nope" in body["error"]
    pause = api.client.post("/api/jobs/nope/pause", json={"reason": "x"}, headers=AS_OPS)
    error_of(pause, 404)
    assert api.store.pauses() == (None, {})
    assert run_count(api.database) == 0


def test_a_job_name_longer_than_the_path_allows_is_a_400(api: Api):
    body = error_of(api.client.get("/api/jobs/" + "a" * 201), 400)
    assert list(fields_of(body)) == ["name"]


def test_pages_of_runs_walk_every_run_once_newest_first(api: Api):
    moments = api.past_instants(23)
    statuses = itertools.cycle(["SUCCESS", "FAILURE", "SKIPPED"])
    ids = [insert_run(api.database, "daily", next(statuses), at) for at in reversed(moments)]
    insert_run(api.database, "gated", "SUCCESS", moments[0])  # another job's: never listed
    newest_first = ids[::-1]

    for limit in (1, 5, 22, 23, 200):
        seen: list[int] = []
        before = None
        pages = 0
        while True:
            query: dict[str, Any] = {"limit": limit}
            if before is not None:
                query["before"] = before
            page = api.client.get("/api/jobs/daily/runs", params=query).json()
            pages += 1
            assert 0 < len(page["runs"]) <= limit
            seen += [run["id"] for run in page["runs"]]
            before = page["next_before"]
            if before is None:
                break
            assert before == seen[-1]
        assert seen == newest_first, limit
        assert pages == -(-23 // limit)

    failures = api.client.get("/api/jobs/daily/runs", params={"status": "FAILURE", "limit": 3})
    page = failures.json()
    assert [run["status"] for run in page["runs"]] == ["FAILURE"] * 3
    rest = api.client.get(
        "/api/jobs/daily/runs", params={"status": "FAILURE", "before": page["next_before"]}
    ).json()
    assert rest["next_before"] is None
    every_failure = [run["id"] for run in page["runs"] + rest["runs"]]
    assert every_failure == [i for n, i in enumerate(ids) if n % 3 == 1][::-1]
    default = api.client.get("/api/jobs/daily/runs").json()
    assert len(default["runs"]) == 23
    assert default["next_before"] is None
    assert api.client.get("/api/jobs/off/runs").json() == {"runs": [], "next_before": None}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 201}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"before": 0}, "before"),
        ({"before": 2**63}, "before"),
        ({"status": "S" * 21}, "status"),
    ],
)
def test_a_page_of_runs_refuses_bad_queries(api: Api, query: dict[str, Any], field: str):
    body = error_of(api.client.get("/api/jobs/daily/runs", params=query), 400)
    assert list(fields_of(body)) == [field]
    assert body["fields"][0]["value"] == str(query[field])


@pytest.mark.parametrize("status", ["failure", "DONE", "not_yet"])
def test_a_page_of_runs_refuses_an_unknown_status(api: Api, status: str):
    body = error_of(api.client.get("/api/jobs/daily/runs", params={"status": status}), 400)
    assert f"status={status!r} is not a status" in body["error"]
    assert "SUCCESS, FAILURE" in body["error"]


def test_a_page_of_runs_takes_the_largest_limit(api: Api):
    assert api.client.get("/api/jobs/daily/runs", params={"limit": 200}).status_code == 200


def test_one_run_by_id(api: Api, history: dict[str, Any]):
    run_id = history["ids"]["p0b"]
    run = api.client.get(f"/api/runs/{run_id}").json()
    assert run["id"] == run_id
    assert run["job_name"] == "daily"
    assert run["status"] == "FAILURE"
    assert parsed(run["scheduled_for"]) == history["instants"][0]
    assert run["trigger"] == "schedule"
    assert run["attempt"] == 2
    assert run["duration_ms"] == 500.0
    assert run["error"] == "down again"
    assert run["params"] is None
    assert run["dry_run"] is False
    assert run["requested_by"] is None
    assert run["worker_id"] == "test:1"
    body = error_of(api.client.get(f"/api/runs/{run_id + 1000}"), 404)
    assert body["error"] == f"no run has id {run_id + 1000}"
    for bad in ("0", "-3", "x", str(2**63)):
        error_of(api.client.get(f"/api/runs/{bad}"), 400)


def test_the_instants_of_a_range_and_what_became_of_each(api: Api, history: dict[str, Any]):
    p0, p1, p2, p3, p4 = history["instants"]
    ids = history["ids"]
    now = utc_now()
    start, end = p4 - timedelta(hours=1), now + timedelta(days=2, hours=13)
    response = api.client.get(
        "/api/jobs/daily/instants", params={"from": start.isoformat(), "to": end.isoformat()}
    )
    assert response.status_code == 200
    timeline = response.json()
    assert timeline["job_name"] == "daily"
    assert parsed(timeline["from"]) == start
    assert parsed(timeline["to"]) == end
    assert timeline["truncated"] is False
    instants = timeline["instants"]
    # p4 came before the job was deployed: not listed, though a run says MISSED.
    assert [parsed(i["scheduled_for"]) for i in instants[:4]] == [p3, p2, p1, p0]
    assert [i["state"] for i in instants] == [
        "SUCCESS",
        "SUCCESS",
        "unaccounted",
        "FAILURE",
        "not_yet",
        "not_yet",
        "not_yet",
    ]
    assert instants[0] == {
        "scheduled_for": instants[0]["scheduled_for"],
        "state": "SUCCESS",
        "run_id": ids["p3"],
        "attempts": 1,
        "duration_ms": 100.0,
        "error": None,
    }
    assert (instants[1]["run_id"], instants[1]["attempts"]) == (ids["p2b"], 2)
    assert (instants[2]["run_id"], instants[2]["attempts"]) == (None, 0)
    assert instants[3]["run_id"] == ids["p0b"]
    assert instants[3]["attempts"] == 2
    assert instants[3]["error"] == "down again"
    assert instants[3]["duration_ms"] == 500.0
    assert all(parsed(i["scheduled_for"]) > now for i in instants[4:])
    assert all(i["run_id"] is None and i["attempts"] == 0 for i in instants[4:])


def test_instants_default_to_the_last_day_and_read_a_bare_time_as_utc(
    api: Api, history: dict[str, Any]
):
    p0, p1 = history["instants"][:2]
    timeline = api.client.get("/api/jobs/daily/instants").json()
    assert parsed(timeline["to"]) - parsed(timeline["from"]) == timedelta(days=1)
    assert [parsed(i["scheduled_for"]) for i in timeline["instants"]] == [p0]
    bare = (p1 - timedelta(minutes=1)).replace(tzinfo=None).isoformat()
    timeline = api.client.get("/api/jobs/daily/instants", params={"from": bare}).json()
    assert parsed(timeline["from"]) == p1 - timedelta(minutes=1)
    assert [i["state"] for i in timeline["instants"]] == ["unaccounted", "FAILURE"]
    backfill = api.client.get("/api/jobs/backfill/instants").json()
    assert backfill["instants"] == []  # manual only: it has no instants


def test_instants_refuse_a_range_that_ends_before_it_starts(api: Api):
    now = utc_now()
    for start, end in [(now, now), (now, now - timedelta(seconds=1))]:
        response = api.client.get(
            "/api/jobs/daily/instants", params={"from": start.isoformat(), "to": end.isoformat()}
        )
        assert error_of(response, 400)["error"] == "`from` must be before `to`"
    body = error_of(api.client.get("/api/jobs/daily/instants", params={"from": "yesterday"}), 400)
    assert list(fields_of(body)) == ["from"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"to": "0001-01-01T00:00:00"}, "to"),
        ({"to": "0001-01-01T00:00:00+14:00"}, "to"),
        ({"from": "1969-12-31T00:00:00Z", "to": "1970-01-03T00:00:00Z"}, "from"),
        ({"from": "9999-12-30T00:00:00", "to": "9999-12-31T23:59:59"}, "to"),
        ({"from": "2026-01-01T00:00:00Z", "to": "9999-12-31T23:30:00-14:00"}, "to"),
    ],
)
def test_instants_refuse_times_out_of_the_calendars_reach(
    api: Api, query: dict[str, str], field: str
):
    """A day before year 1, or schedule arithmetic past 9999, is a 400 (was a 500)."""
    for job in ("daily", "gated"):
        body = error_of(api.client.get(f"/api/jobs/{job}/instants", params=query), 400)
        assert body["error"] == f"`{field}` must be between 1970-01-02 and 9000-01-01"
        assert [f["field"] for f in body["fields"]] == [field]


def test_the_widest_range_of_instants_is_cut_at_ten_thousand(api: Api):
    widest = {"from": "1970-01-02T00:00:00Z", "to": "9000-01-01T00:00:00Z"}
    timeline = api.client.get("/api/jobs/gated/instants", params=widest).json()
    assert timeline["truncated"] is False
    assert len(timeline["instants"]) == 9000 - utc_now().year
    daily = api.client.get("/api/jobs/daily/instants", params=widest).json()
    assert daily["truncated"] is True
    assert len(daily["instants"]) == 10_000


# -- run now ---------------------------------------------------------------------------


def runs_of(database: Database, job_name: str) -> list[Any]:
    with database.transaction() as session:
        return list(
            session.execute(
                text(
                    "SELECT id, status, trigger, params, dry_run, requested_by, result,"
                    " error_message FROM job_execution WHERE job_name = :job ORDER BY id"
                ),
                {"job": job_name},
            )
        )


def test_a_run_started_answers_at_once_shows_while_it_runs_then_its_outcome(api: Api):
    response = api.client.post(
        "/api/jobs/gated/runs",
        json={"params": {"limit": 7, "label": "nightly"}, "dry_run": True},
        headers=AS_OPS,
    )
    assert response.status_code == 202
    started = response.json()
    run_id = started["run_id"]
    assert started == {"run_id": run_id, "job_name": "gated", "status": "RUNNING", "reason": None}

    # The body waits on the gate, so the run is RUNNING for as long as the test looks.
    running = api.client.get(f"/api/runs/{run_id}").json()
    assert running["status"] == "RUNNING"
    assert running["trigger"] == "manual"
    assert running["completed_at"] is None
    assert running["duration_ms"] is None
    assert running["params"] == {"limit": 7, "label": "nightly"}
    assert running["dry_run"] is True
    assert running["requested_by"] == "console:ops"
    assert api.client.get("/api/jobs/gated/runs").json()["runs"][0]["id"] == run_id
    listed = {job["name"]: job for job in api.client.get("/api/jobs").json()["jobs"]}
    assert listed["gated"]["last_run"]["status"] == "RUNNING"
    assert api.console.background.running() == [run_id]

    api.gate.set()
    api.settle()
    done = api.client.get(f"/api/runs/{run_id}").json()
    assert done["status"] == "SUCCESS"
    assert done["result"] == {"label": "nightly", "limit": 7, "dry_run": True}
    assert done["duration_ms"] is not None

    again = api.client.post("/api/jobs/gated/runs", headers=AS_BOT)  # no body: the defaults
    assert again.status_code == 202
    api.settle()
    [_, second] = runs_of(api.database, "gated")
    assert second.id == again.json()["run_id"]
    assert (second.params, second.dry_run) == ({"limit": 10, "label": "x"}, False)
    assert second.requested_by == "console:deploy-bot"
    assert second.result == {"label": "x", "limit": 10, "dry_run": False}


def test_a_run_is_refused_while_another_runs(api: Api):
    first = api.client.post("/api/jobs/gated/runs", json={}, headers=AS_OPS)
    assert first.status_code == 202
    body = error_of(api.client.post("/api/jobs/gated/runs", json={}, headers=AS_OPS), 409)
    assert body["error"].startswith("gated is not run now: previous run")
    assert [run.id for run in runs_of(api.database, "gated")] == [first.json()["run_id"]]
    api.gate.set()
    api.settle()


def test_a_run_is_refused_while_another_process_holds_the_jobs_lock(api: Api):
    with api.database.transaction() as session:
        session.execute(text("SELECT name FROM job WHERE name = 'gated' FOR UPDATE"))
        response = api.client.post("/api/jobs/gated/runs", headers=AS_OPS)
        body = error_of(response, 409)
    assert body["error"] == "another run of gated holds its lock; try again when it ends"
    assert run_count(api.database) == 0


def test_refused_params_are_a_400_field_by_field_and_write_nothing(api: Api):
    response = api.client.post(
        "/api/jobs/gated/runs",
        json={"params": {"limit": 0, "colour": "red", "label": "y" * 41}},
        headers=AS_OPS,
    )
    body = error_of(response, 400)
    assert body["error"] == "job 'gated' refused its parameters"
    assert {(f["field"], f["value"]) for f in body["fields"]} == {
        ("colour", "red"),
        ("limit", 0),
        ("label", "y" * 41),
    }
    assert fields_of(body)["colour"] == "unknown parameter; the job takes limit, label"
    assert fields_of(body)["limit"] == "Input should be greater than or equal to 1"

    missing = error_of(api.client.post("/api/jobs/backfill/runs", headers=AS_OPS), 400)
    assert missing["fields"] == [{"field": "day", "value": None, "message": "Field required"}]
    none_taken = error_of(
        api.client.post("/api/jobs/daily/runs", json={"params": {"x": 1}}, headers=AS_OPS), 400
    )
    assert fields_of(none_taken) == {"x": "the job takes no parameters"}
    assert run_count(api.database) == 0

    day = api.client.post(
        "/api/jobs/backfill/runs", json={"params": {"day": "2026-11-01"}}, headers=AS_OPS
    )
    assert day.status_code == 202
    api.settle()
    [run] = runs_of(api.database, "backfill")
    assert (run.status, run.params, run.result) == (
        "SUCCESS",
        {"day": "2026-11-01"},
        {"day": "2026-11-01"},
    )


@pytest.mark.parametrize(
    ("sent", "field"),
    [
        ({"param": {"limit": 1}}, "param"),
        ({"params": [1, 2]}, "params"),
        ({"params": "limit=1"}, "params"),
        ({"dry_run": "maybe"}, "dry_run"),
        ([], "(body)"),
    ],
)
def test_a_run_request_of_the_wrong_shape_is_a_400(api: Api, sent: Any, field: str):
    body = error_of(api.client.post("/api/jobs/gated/runs", json=sent, headers=AS_OPS), 400)
    assert body["error"] == "the request was refused; see `fields`"
    assert list(fields_of(body)) == [field]
    assert run_count(api.database) == 0


def test_a_body_that_is_not_json_is_refused_before_anything_runs(api: Api):
    post = api.client.post
    path = "/api/jobs/gated/runs"
    json_type = {**AS_OPS, "content-type": "application/json"}
    malformed = error_of(post(path, content=b'{"params": ', headers=json_type), 400)
    assert malformed["error"].startswith("the body is not valid JSON")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        typed = error_of(
            post(path, content=b'{"params": {}}', headers={**AS_OPS, "content-type": content_type}),
            415,
        )
        assert typed["error"] == f"send the body as application/json, not {content_type}"
    untyped = error_of(post(path, content=b"{}", headers=AS_OPS), 415)
    assert untyped["error"] == "send the body as application/json, not no type"
    huge = {"params": {"label": "y" * MAX_BODY_BYTES}}
    too_big = error_of(post(path, json=huge, headers=AS_OPS), 413)
    assert too_big["error"] == f"the body is over {MAX_BODY_BYTES} bytes"
    assert run_count(api.database) == 0
    # Exactly at the cap is read (and refused for its params, not its size).
    at_cap = b'{"params": {"label": "' + b"y" * (MAX_BODY_BYTES - 25) + b'"}}'
    assert len(at_cap) == MAX_BODY_BYTES
    assert post(path, content=at_cap, headers=json_type).status_code == 400


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/api/jobs/gated/runs", rb'{"params": {"label": "\ud800"}}', "label"),
        ("/api/jobs/gated/runs", rb'{"params": {"\ud800": 1}}', "\ud800"),
        ("/api/jobs/gated/runs", rb'{"\ud800": 1}', "(body)"),
        ("/api/jobs/gated/runs", rb'{"dry_run": "\udc00"}', "dry_run"),
        ("/api/jobs/daily/pause", rb'{"reason": "\ud800"}', "reason"),
        ("/api/pause-all", rb'{"reason": "\ud800"}', "reason"),
    ],
)
def test_a_refused_value_that_utf8_cannot_encode_is_echoed_escaped(
    api: Api, path: str, raw: bytes, field: str
):
    """JSON may hold a lone surrogate; the 400 echoes it back as an escape, not a 500."""
    headers = {**AS_OPS, "content-type": "application/json"}
    body = error_of(api.client.post(path, content=raw, headers=headers), 400)
    assert [f["field"] for f in body["fields"]] == [field]
    assert run_count(api.database) == 0
    assert api.store.pauses() == (None, {})


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/api/jobs/gated/runs", {"params": {"label": "a\x00b"}}),
        ("/api/jobs/daily/pause", {"reason": "a\x00b"}),
        ("/api/pause-all", {"reason": "a\x00b"}),
    ],
)
def test_a_value_the_database_cannot_store_is_a_400(api: Api, path: str, sent: Any):
    """A NUL character passes validation but not PostgreSQL: the caller's to fix, not a 503."""
    body = error_of(api.client.post(path, json=sent, headers=AS_OPS), 400)
    assert body["error"].startswith("a value of the request cannot be stored: ")
    assert api.database.display_url not in body["error"]
    assert run_count(api.database) == 0
    assert api.store.pauses() == (None, {})


def test_a_disabled_job_is_not_run_from_the_console(api: Api):
    body = error_of(api.client.post("/api/jobs/off/runs", headers=AS_OPS), 409)
    assert "disabled by OFF_ENABLED" in body["error"]
    assert run_count(api.database) == 0


def test_a_paused_job_asked_to_run_is_skipped(api: Api):
    assert (
        api.client.post("/api/jobs/gated/pause", json={"reason": "db upgrade"}, headers=AS_OPS)
    ).status_code == 200
    response = api.client.post("/api/jobs/gated/runs", headers=AS_OPS)
    assert response.status_code == 200
    assert response.json() == {
        "run_id": None,
        "job_name": "gated",
        "status": "SKIPPED",
        "reason": "paused: db upgrade",
    }
    # A manual skip is no outcome of an instant: the answer is its only record.
    assert runs_of(api.database, "gated") == []
    api.client.post("/api/jobs/gated/resume", headers=AS_OPS)
    api.client.post("/api/pause-all", json={"reason": "freeze"}, headers=AS_OPS)
    everything = api.client.post("/api/jobs/gated/runs", headers=AS_OPS).json()
    assert (everything["status"], everything["reason"]) == ("SKIPPED", "paused (all jobs): freeze")


# -- pause, resume, retry --------------------------------------------------------------


def test_pause_and_resume_one_job(api: Api):
    response = api.client.post(
        "/api/jobs/daily/pause", json={"reason": "db upgrade"}, headers=AS_BOT
    )
    assert response.status_code == 200
    assert response.json() == {"ok": True, "message": "daily paused: db upgrade"}
    jobs = {job["name"]: job for job in api.client.get("/api/jobs").json()["jobs"]}
    pause = jobs["daily"]["paused"]
    assert (pause["reason"], pause["by"], pause["all_jobs"]) == (
        "db upgrade",
        "console:deploy-bot",
        False,
    )
    assert abs(parsed(pause["since"]) - utc_now()) < timedelta(minutes=1)
    assert jobs["gated"]["paused"] is None
    assert api.client.get("/api/jobs/daily").json()["paused"]["reason"] == "db upgrade"

    resumed = api.client.post("/api/jobs/daily/resume", headers=AS_OPS)
    assert resumed.json() == {"ok": True, "message": "daily resumed"}
    assert api.client.get("/api/jobs/daily").json()["paused"] is None
    again = api.client.post("/api/jobs/daily/resume", headers=AS_OPS)
    assert again.json() == {"ok": True, "message": "daily was not paused"}


@pytest.mark.parametrize("path", ["/api/jobs/daily/pause", "/api/pause-all"])
@pytest.mark.parametrize(
    ("sent", "field"),
    [
        ({}, "reason"),
        ({"reason": ""}, "reason"),
        ({"reason": " \t\n "}, "reason"),
        ({"reason": "r" * (MAX_REASON_CHARS + 1)}, "reason"),
        ({"reason": 42}, "reason"),
        ({"reason": "ok", "until": "tomorrow"}, "until"),
        (None, "(body)"),
    ],
)
def test_a_pause_needs_a_reason_of_1_to_500_characters_not_all_blank(
    api: Api, path: str, sent: Any, field: str
):
    body = error_of(api.client.post(path, json=sent, headers=AS_OPS), 400)
    assert list(fields_of(body)) == [field]
    assert api.store.pauses() == (None, {})
    longest = api.client.post(path, json={"reason": "r" * MAX_REASON_CHARS}, headers=AS_OPS)
    assert longest.status_code == 200


def test_pause_all_pauses_every_job_and_resume_all_lifts_it(api: Api):
    api.client.post("/api/jobs/daily/pause", json={"reason": "its own"}, headers=AS_OPS)
    response = api.client.post("/api/pause-all", json={"reason": "incident 42"}, headers=AS_OPS)
    assert response.json() == {"ok": True, "message": "all jobs paused: incident 42"}
    listing = api.client.get("/api/jobs").json()
    assert listing["paused_all"]["reason"] == "incident 42"
    assert listing["paused_all"]["by"] == "console:ops"
    assert listing["paused_all"]["all_jobs"] is True
    pauses = {job["name"]: job["paused"] for job in listing["jobs"]}
    assert pauses["daily"]["reason"] == "its own"  # the job's own pause shows first
    assert pauses["daily"]["all_jobs"] is False
    assert {pauses[name]["reason"] for name in pauses if name != "daily"} == {"incident 42"}
    assert all(pauses[name]["all_jobs"] for name in pauses if name != "daily")

    lifted = api.client.post("/api/resume-all", headers=AS_OPS)
    assert lifted.json() == {"ok": True, "message": "all jobs resumed"}
    listing = api.client.get("/api/jobs").json()
    assert listing["paused_all"] is None
    assert [job["name"] for job in listing["jobs"] if job["paused"]] == ["daily"]
    again = api.client.post("/api/resume-all", headers=AS_OPS)
    assert again.json() == {"ok": True, "message": "jobs were not all paused"}


def test_retry_runs_a_failed_run_again_with_its_params(api: Api):
    first = api.client.post(
        "/api/jobs/flaky/runs", json={"params": {"label": "first"}, "dry_run": True}, headers=AS_OPS
    )
    assert first.status_code == 202
    api.settle()
    failed_id = first.json()["run_id"]
    failed = api.client.get(f"/api/runs/{failed_id}").json()
    assert (failed["status"], failed["error"]) == ("FAILURE", "RuntimeError: down (first)")

    retried = api.client.post(f"/api/runs/{failed_id}/retry", headers=AS_BOT)
    assert retried.status_code == 202
    assert retried.json()["status"] == "RUNNING"
    api.settle()
    retry = api.client.get(f"/api/runs/{retried.json()['run_id']}").json()
    assert retry["attempt"] == 2
    assert retry["scheduled_for"] == failed["scheduled_for"]
    assert retry["params"] == {"limit": 10, "label": "first"}
    assert retry["dry_run"] is True
    assert retry["requested_by"] == "console:deploy-bot"
    assert retry["status"] == "FAILURE"

    stale = error_of(api.client.post(f"/api/runs/{failed_id}/retry", headers=AS_OPS), 409)
    assert f"retry run {retry['id']} instead" in stale["error"]
    missing = error_of(api.client.post("/api/runs/999999/retry", headers=AS_OPS), 404)
    assert missing["error"].startswith("no run has id 999999")
    for bad in ("0", "x", str(2**63)):
        error_of(api.client.post(f"/api/runs/{bad}/retry", headers=AS_OPS), 400)


def test_only_a_failure_of_a_registered_job_can_be_retried(api: Api):
    moment = api.past_instants(1)[0]
    success = insert_run(api.database, "daily", "SUCCESS", moment)
    body = error_of(api.client.post(f"/api/runs/{success}/retry", headers=AS_OPS), 409)
    assert body["error"] == f"run {success} is SUCCESS; only a FAILURE can be retried"
    running = insert_run(api.database, "gated", "RUNNING", moment)
    error_of(api.client.post(f"/api/runs/{running}/retry", headers=AS_OPS), 409)
    api.store.ensure_jobs(["retired"])
    gone = insert_run(api.database, "retired", "FAILURE", moment, error="old")
    body = error_of(api.client.post(f"/api/runs/{gone}/retry", headers=AS_OPS), 409)
    assert "no job named 'retired' is registered" in body["error"]
    assert run_count(api.database) == 3


def test_a_retry_while_the_job_runs_is_refused(api: Api):
    moment = api.past_instants(1)[0]
    failed = insert_run(api.database, "flaky", "FAILURE", moment, error="down")
    insert_run(api.database, "flaky", "RUNNING", moment + timedelta(minutes=1))
    body = error_of(api.client.post(f"/api/runs/{failed}/retry", headers=AS_OPS), 409)
    assert "still running" in body["error"]
    assert run_count(api.database) == 2


# -- who may read and act --------------------------------------------------------------

MUTATIONS: list[tuple[str, Any]] = [
    ("/api/jobs/gated/runs", {"params": {}}),
    ("/api/runs/1/retry", None),
    ("/api/jobs/daily/pause", {"reason": "x"}),
    ("/api/jobs/daily/resume", None),
    ("/api/pause-all", {"reason": "x"}),
    ("/api/resume-all", None),
]
READS = [
    "/api/jobs",
    "/api/jobs/daily",
    "/api/jobs/daily/runs",
    "/api/jobs/daily/instants",
    "/api/runs/{run_id}",
]


def _nothing_done(api: Api, before: int) -> None:
    assert api.store.pauses() == (None, {})
    assert run_count(api.database) == before


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        f"Bearer {OPS_SECRET}x",
        f"Bearer {READ_SECRET}",
        f"Basic {OPS_SECRET}",
        OPS_SECRET,
        "Bearer",
        "Bearer   ",
        f"Token {OPS_SECRET}",
    ],
    ids=["none", "wrong", "a-read-token", "basic", "bare", "empty", "blank", "other-scheme"],
)
def test_every_mutation_needs_a_write_token(make_api: Any, authorization: str | None):
    api: Api = make_api(read=READ_TOKENS)
    failed = insert_run(api.database, "flaky", "FAILURE", api.past_instants(1)[0], error="x")
    headers = {} if authorization is None else {"Authorization": authorization}
    for template, sent in MUTATIONS:
        path = template.replace("/runs/1/", f"/runs/{failed}/")
        response = api.client.post(path, json=sent, headers=headers)
        body = error_of(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "token" in body["error"] or "Bearer" in body["error"]
    _nothing_done(api, 1)


def test_the_write_token_is_matched_whatever_the_schemes_case(api: Api):
    lower = api.client.post("/api/resume-all", headers={"Authorization": f"bearer {OPS_SECRET}"})
    assert lower.status_code == 200


def test_a_read_only_console_refuses_every_mutation_and_says_so(make_api: Any):
    api: Api = make_api(write="", read=READ_TOKENS)
    listing = api.client.get("/api/jobs", headers=AS_READER).json()
    assert listing["read_only"] is True
    for headers in ({}, AS_OPS, AS_READER):
        for path, sent in MUTATIONS:
            body = error_of(api.client.post(path, json=sent, headers=headers), 403)
            assert body["error"].startswith("the console is read-only")
    _nothing_done(api, 0)


def test_reads_need_a_read_or_write_token_once_read_tokens_are_set(make_api: Any):
    api: Api = make_api(read=READ_TOKENS)
    run_id = insert_run(api.database, "daily", "SUCCESS", api.past_instants(1)[0])
    for template in READS:
        path = template.format(run_id=run_id)
        assert api.client.get(path, headers=AS_READER).status_code == 200, path
        assert api.client.get(path, headers=AS_BOT).status_code == 200, path
        refused = api.client.get(path)
        assert error_of(refused, 401)["error"].startswith("reading needs a token")
        assert refused.headers["www-authenticate"] == "Bearer"
        error_of(api.client.get(path, headers={"Authorization": f"Bearer {READ_SECRET}0"}), 401)
        error_of(api.client.get(path, headers={"Authorization": "Bearer"}), 401)
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert api.client.get(probe).status_code == 200, probe


def test_reads_are_open_without_read_tokens_and_so_are_the_probes(make_api: Any):
    api: Api = make_api(write="")
    run_id = insert_run(api.database, "daily", "SUCCESS", api.past_instants(1)[0])
    for path in READS:
        assert api.client.get(path.format(run_id=run_id)).status_code == 200, path
    assert api.client.get("/healthz").text == "alive\n"
    assert api.client.get("/readyz").text == "ready\n"
    metrics = api.client.get("/metrics")
    assert metrics.status_code == 200
    assert "cronlock_" in metrics.text
    # A token that is not accepted is an error even where none is needed.
    error_of(api.client.get("/api/jobs", headers=AS_OPS), 401)


def test_unknown_routes_and_methods_answer_json_errors(api: Api):
    assert error_of(api.client.get("/api/nope"), 404)["error"].startswith("no such route")
    error_of(api.client.delete("/api/jobs/daily", headers=AS_OPS), 405)
    error_of(api.client.get("/api/pause-all"), 405)
    error_of(api.client.put("/api/jobs/daily/runs", json={}, headers=AS_OPS), 405)


# -- fuzz from the OpenAPI document --------------------------------------------------

FUZZ_EXAMPLES = 50


def _fuzz_jobs() -> list[Job]:
    """Harmless, quick jobs: whatever the fuzz starts ends at once."""

    def broken(ctx: RunContext) -> None:
        raise RuntimeError("broken on purpose")

    return [
        Job(name="tidy", body=lambda ctx: {"ok": True}, schedule="*/5 * * * *"),
        Job(name="sized", body=lambda ctx: ctx.params.model_dump(), schedule=YEARLY, params=Limits),
        Job(name="dated", body=lambda ctx: {"day": str(ctx.params.day)}, params=Day),
        Job(name="broken", body=broken, schedule=YEARLY),
        Job(name="off", body=lambda ctx: None, schedule=YEARLY),
    ]


def test_no_request_the_openapi_document_allows_or_not_gets_a_5xx(make_api: Any):
    """Every operation, with generated and with real job names and run ids, valid data
    and not: never a 5xx, and each answer as the document describes it."""
    api: Api = make_api(jobs=_fuzz_jobs())
    register_at(api.database, "tidy", utc_now() - timedelta(hours=2))
    moment = utc_now() - timedelta(hours=1)
    run_ids = [
        insert_run(api.database, "broken", "FAILURE", moment, error="broken"),
        insert_run(api.database, "tidy", "SUCCESS", moment),
        insert_run(api.database, "sized", "SKIPPED", moment),
    ]
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", api.console.app)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    fuzz = settings(
        max_examples=FUZZ_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "GET /api/jobs",
        "GET /api/jobs/{name}",
        "GET /api/jobs/{name}/runs",
        "GET /api/jobs/{name}/instants",
        "GET /api/runs/{run_id}",
        "POST /api/jobs/{name}/runs",
        "POST /api/runs/{run_id}/retry",
        "POST /api/jobs/{name}/pause",
        "POST /api/jobs/{name}/resume",
        "POST /api/pause-all",
        "POST /api/resume-all",
    }
    names = st.sampled_from([None, *(job.name for job in _fuzz_jobs())])
    ids = st.sampled_from([None, *run_ids])
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation in operations:
        for mode in modes:
            if mode == schemathesis.GenerationMode.NEGATIVE and not (
                len(operation.query) + len(operation.body) + len(operation.path_parameters)
            ):
                continue  # nothing to make invalid

            @fuzz
            @given(case=operation.as_strategy(generation_mode=mode), name=names, run_id=ids)
            def call(case: Any, name: str | None, run_id: int | None) -> None:
                # Mostly a job or run that exists, to get past the 404 to the real work.
                if name is not None and "name" in (case.path_parameters or {}):
                    case.path_parameters["name"] = name
                if run_id is not None and "run_id" in (case.path_parameters or {}):
                    case.path_parameters["run_id"] = run_id
                case.call_and_validate(headers=AS_OPS, checks=checks)

            call()
        api.settle()


# -- a real server -----------------------------------------------------------------------

SERVE_JOBS = '''
import os
import time
from pathlib import Path

from app.job import job


@job("waits", schedule="0 0 1 1 *")
def waits(ctx):
    """Runs until the test creates its gate file."""
    gate = Path(os.environ["CONSOLE_TEST_GATE"])
    deadline = time.monotonic() + 30
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never created the gate file")
        time.sleep(0.01)
    return {"gate": gate.name}


JOBS = [waits]
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def test_cronlock_serve_runs_a_job_over_http_from_start_to_outcome(db_url: str, tmp_path: Path):
    jobs = tmp_path / "serve_jobs.py"
    jobs.write_text(SERVE_JOBS)
    gate = tmp_path / "gate"
    port = _free_port()
    env = cli_env(
        DATABASE_URL=db_url,
        JOBS_MODULE=str(jobs),
        METRICS_PORT=str(port),
        METRICS_HOST="127.0.0.1",
        CONSOLE_TOKEN=WRITE_TOKENS,
        CONSOLE_TEST_GATE=str(gate),
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_until(lambda: _answers(client), what="`cronlock serve` to answer /readyz")
            assert client.get("/healthz").text == "alive\n"
            listing = client.get("/api/jobs").json()
            assert [job["name"] for job in listing["jobs"]] == ["waits"]
            assert listing["read_only"] is False

            refused = client.post("/api/jobs/waits/runs")
            error_of(refused, 401)
            assert refused.headers["www-authenticate"] == "Bearer"

            started = client.post("/api/jobs/waits/runs", json={}, headers=AS_OPS)
            assert started.status_code == 202, started.text
            run_id = started.json()["run_id"]
            running = client.get(f"/api/runs/{run_id}").json()
            assert (running["status"], running["requested_by"]) == ("RUNNING", "console:ops")
            error_of(client.post("/api/jobs/waits/runs", headers=AS_OPS), 409)

            # A body sent in chunks, with no length declared, is cut off at the cap too.
            chunks = (b"x" * 8192 for _ in range(MAX_BODY_BYTES // 8192 + 1))
            headers = {**AS_OPS, "content-type": "application/json"}
            too_big = client.post("/api/jobs/waits/runs", content=chunks, headers=headers)
            error_of(too_big, 413)

            gate.touch()

            def ended() -> dict[str, Any] | None:
                run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
                return None if run["status"] == "RUNNING" else run

            done = wait_until(ended, what="the run to end")
            assert (done["status"], done["result"]) == ("SUCCESS", {"gate": "gate"})
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, log_path.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
