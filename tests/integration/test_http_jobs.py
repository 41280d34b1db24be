"""HTTP jobs against real servers on loopback: a token endpoint and a target, scripted.

Runs go through the real claim path (a Worker's tick, `cronlock run`, worker
processes), so the lock, the ledger, the alarm and the lease are the real ones.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from app.http_jobs.tokens import TOKENS
from app.job import Job, http_job
from app.ops import metrics
from app.store.database import Database
from tests.integration.cli_helpers import cronlock, start_cronlock
from tests.integration.faults import scalar, start_worker, stop, wait_for
from tests.integration.helpers import register_before_latest, rows, wait_until
from tests.integration.http_servers import (
    Reply,
    TargetServer,
    TokenServer,
    closed_port,
    serving,
)
from tests.integration.test_worker import NOON, make_worker

NAME = "release-commission-locks"
PATH = "/v1/admin/commission-locks/release-expired"
CLIENT_SECRET = "client-s3cret-4f9a"
QUERY_KEY = "query-k3y-77c1"
KEY = f"{NAME}:2026-01-01T12:00:00+00:00"


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    TOKENS.clear()
    clock = TOKENS.clock
    yield
    TOKENS.clock = clock
    TOKENS.clear()


@pytest.fixture
def token() -> Iterator[TokenServer]:
    server = TokenServer()
    with serving(server):
        yield server


@pytest.fixture
def target() -> Iterator[TargetServer]:
    server = TargetServer()
    with serving(server):
        yield server


@pytest.fixture
def env(token: TokenServer, target: TargetServer) -> dict[str, str]:
    return {
        "MEMBERSHIP_URL": f"{target.url}/?code={QUERY_KEY}",
        "M2M_TOKEN_URL": token.token_url,
        "M2M_CLIENT_ID": "cronlock-worker",
        "M2M_CLIENT_SECRET": CLIENT_SECRET,
        "M2M_AUDIENCE": "membership",
    }


def releasing(**options) -> Job:
    defaults = {
        "schedule": "* * * * *",
        "url_env": "MEMBERSHIP_URL",
        "path": PATH,
        "scopes": ["admin:membership"],
        "body": {"older_than_minutes": 60},
        "headers": {"X-Team": "payments"},
        "attempt_backoff_s": 0.05,
        "max_attempts": 3,
        "timeout_s": 10,
    }
    return http_job(NAME, **{**defaults, **options})


def tick(database: Database, env: dict[str, str], job: Job, minutes: int = 1) -> list:
    """Run the job once per minute from NOON, through a worker's ticks; the runs."""
    worker = make_worker(database, [job], environ=env)
    for minute in range(minutes):
        worker.tick(NOON + timedelta(minutes=minute, seconds=1))
    return rows(database)


def calls(status: str, host: str) -> float:
    labels = {"job_name": NAME, "target_host": host, "target_status": status}
    return metrics.REGISTRY.get_sample_value("cronlock_http_calls_total", labels) or 0.0


def host_of(target: TargetServer) -> str:
    return target.url.removeprefix("http://")


def test_a_run_calls_the_target_with_a_token_and_keeps_its_answer(database, env, token, target):
    before = calls("200", host_of(target))
    [run] = tick(database, env, releasing())
    assert run.status == "SUCCESS", run.error_message
    assert run.result["status"] == 200
    assert run.result["attempts"] == 1
    assert run.result["response"] == {"released": 3}
    assert run.result["target_host"] == host_of(target)
    assert run.result["duration_ms"] > 0
    [seen] = target.requests()
    assert (seen.method, seen.path, seen.query) == ("POST", PATH, f"code={QUERY_KEY}")
    assert seen.headers["authorization"] == "Bearer token-1"
    assert seen.headers["idempotency-key"] == KEY
    assert seen.headers["x-cronlock-run-id"] == str(run.id)
    assert seen.headers["x-cronlock-scheduled-for"] == "2026-01-01T12:00:00+00:00"
    assert seen.headers["user-agent"].startswith("cronlock/")
    assert NAME in seen.headers["user-agent"]
    assert seen.headers["x-team"] == "payments"
    assert "x-cronlock-dry-run" not in seen.headers
    assert json.loads(seen.body) == {"older_than_minutes": 60}
    [grant] = token.requests()
    assert grant.form == {
        "grant_type": "client_credentials",
        "audience": "membership",
        "scope": "admin:membership",
    }
    assert grant.basic_auth == ("cronlock-worker", CLIENT_SECRET)
    assert calls("200", host_of(target)) == before + 1


def test_one_token_serves_many_runs(database, env, token, target):
    runs = tick(database, env, releasing(), minutes=4)
    assert [r.status for r in runs] == ["SUCCESS"] * 4
    assert len(token.requests()) == 1
    assert {s.headers["authorization"] for s in target.requests()} == {"Bearer token-1"}


def test_a_token_is_refreshed_shortly_before_it_expires(database, env, token, target):
    token.expires_in = 600
    now = [1000.0]
    TOKENS.clock = lambda: now[0]
    worker = make_worker(database, [releasing()], environ=env)
    worker.tick(NOON + timedelta(seconds=1))
    now[0] += 530  # 70 s left: still more than the minute's margin
    worker.tick(NOON + timedelta(minutes=1, seconds=1))
    now[0] += 20  # 50 s left: within the margin
    worker.tick(NOON + timedelta(minutes=2, seconds=1))
    assert [s.headers["authorization"] for s in target.requests()] == [
        "Bearer token-1",
        "Bearer token-1",
        "Bearer token-2",
    ]


def test_a_401_takes_a_fresh_token_and_tries_once_more(database, env, token, target):
    target.then(Reply(401, json={"error": "token revoked"}))
    [run] = tick(database, env, releasing())
    assert run.status == "SUCCESS", run.error_message
    assert run.result["attempts"] == 2
    assert [s.headers["authorization"] for s in target.requests()] == [
        "Bearer token-1",
        "Bearer token-2",
    ]


def test_a_second_401_fails_at_once(database, env, token, target):
    target.then(Reply(401), Reply(401), Reply(200))
    [run] = tick(database, env, releasing())
    assert run.status == "FAILURE"
    assert "answered 401 with a fresh token" in run.error_message
    assert "audience and scopes" in run.error_message
    assert len(target.requests()) == 2


def test_refused_client_credentials_fail_at_once_and_say_so(database, env, token, target):
    token.then(Reply(401, json={"error": "invalid_client", "error_description": "bad secret"}))
    [run] = tick(database, env, releasing())
    assert run.status == "FAILURE"
    assert "got no token: token endpoint 127.0.0.1:" in run.error_message
    assert "refused the client credentials (401): invalid_client: bad secret" in run.error_message
    assert len(token.requests()) == 1
    assert target.requests() == []


def test_a_token_endpoint_that_fails_for_a_moment_is_tried_again(database, env, token, target):
    token.then(Reply(503, text="auth is restarting"))
    [run] = tick(database, env, releasing())
    assert run.status == "SUCCESS", run.error_message
    assert run.result["attempts"] == 2
    assert len(token.requests()) == 2
    assert len(target.requests()) == 1


def test_a_429_is_retried_after_its_retry_after(database, env, target):
    target.then(Reply(429, json={"error": "slow down"}, headers={"Retry-After": "1"}))
    [run] = tick(database, env, releasing())
    assert run.status == "SUCCESS", run.error_message
    assert run.result["attempts"] == 2
    first, second = target.requests()
    assert second.at - first.at >= 1.0


def test_a_503_then_a_200_succeeds_with_the_same_idempotency_key(database, env, target):
    target.then(Reply(503, text="upstream down"))
    [run] = tick(database, env, releasing())
    assert run.status == "SUCCESS", run.error_message
    assert run.result["attempts"] == 2
    assert [s.headers["idempotency-key"] for s in target.requests()] == [KEY, KEY]
    assert calls("503", host_of(target)) >= 1


def test_a_target_that_keeps_failing_fails_the_run_after_its_attempts(database, env, target):
    target.then(*[Reply(503, json={"error": "maintenance"})] * 3)
    [run] = tick(database, env, releasing())
    assert run.status == "FAILURE"
    assert run.error_message.startswith(
        f'HttpCallFailed: POST {host_of(target)}{PATH} answered 503: {{"error": "maintenance"}}; '
        "3 attempts in"
    )
    assert len(target.requests()) == 3


def test_a_400_fails_without_a_retry(database, env, target):
    target.then(Reply(400, json={"error": "older_than_minutes must be positive"}))
    [run] = tick(database, env, releasing())
    assert run.status == "FAILURE"
    assert 'answered 400: {"error": "older_than_minutes must be positive"}; 1 attempt' in (
        run.error_message
    )
    assert len(target.requests()) == 1


def test_a_refused_connection_is_retried_then_fails(database, env):
    env = {**env, "MEMBERSHIP_URL": f"http://127.0.0.1:{closed_port()}"}
    [run] = tick(database, env, releasing())
    assert run.status == "FAILURE"
    assert "connection refused; 3 attempts in" in run.error_message
    assert calls("connect_error", f"127.0.0.1:{env['MEMBERSHIP_URL'].rsplit(':', 1)[1]}") == 3


def test_a_slow_target_is_cut_off_at_the_timeout_and_its_request_dropped(database, env, target):
    target.then(Reply(hold=True))
    started = time.monotonic()
    [run] = tick(database, env, releasing(timeout_s=1))
    took = time.monotonic() - started
    assert run.status == "FAILURE"
    assert run.error_message == "timed out after 1s"
    assert took < 2.5
    wait_until(lambda: target.disconnected, timeout_s=5, what="the target to see the client go")


def test_a_lost_lease_drops_the_request_in_flight(database, env, target):
    target.then(Reply(hold=True))
    env = {**env, "STALE_JOB_THRESHOLD_SECONDS": "1", "HEARTBEAT_INTERVAL_SECONDS": "0.1"}
    taken: list[float] = []

    def take_over() -> None:
        wait_until(target.requests, timeout_s=10)
        with database.transaction() as session:
            session.execute(
                text(
                    "UPDATE job_execution SET status = 'FAILURE', completed_at = now(), "
                    "error_message = 'abandoned: taken over by the test' WHERE status = 'RUNNING'"
                )
            )
        taken.append(time.monotonic())

    rival = threading.Thread(target=take_over)
    rival.start()
    tick(database, env, releasing(timeout_s=30))
    ended = time.monotonic()
    rival.join()
    assert ended - taken[0] < 1.5  # a renewal (0.1 s) finds the run gone; the watcher cancels
    wait_until(lambda: target.disconnected, timeout_s=5, what="the target to see the client go")
    [run] = rows(database)
    assert (run.status, run.error_message) == ("FAILURE", "abandoned: taken over by the test")


# -- as an operator runs them: JOBS_FILE, `cronlock run`, worker processes ------------------

NO_MODULE_JOBS = "JOBS = []\n"
JOBS_TOML = f"""
[[job]]
name = "{NAME}"
schedule = "0 0 1 1 *"
url_env = "MEMBERSHIP_URL"
path = "{PATH}"
scopes = ["admin:membership"]
body = {{ older_than_minutes = 60 }}
timeout_s = 20
attempt_backoff_s = 0.05
retries = 1
"""


def deployment(tmp_path: Path, db_url: str, env: dict[str, str], toml: str = JOBS_TOML) -> dict:
    module = tmp_path / "no_jobs.py"
    module.write_text(NO_MODULE_JOBS)
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(toml)
    return {**env, "DATABASE_URL": db_url, "JOBS_MODULE": str(module), "JOBS_FILE": str(jobs_file)}


def echo(status: list[int]):
    """A target answering with what it received, headers and query included."""
    return lambda seen: Reply(status[0], json={"headers": seen.headers, "query": seen.query})


def test_a_dry_run_says_so_to_the_target_and_history_shows_its_answer(
    tmp_path, db_url, env, target
):
    variables = deployment(tmp_path, db_url, env)
    done = cronlock("run", NAME, "--dry-run", cwd=tmp_path, **variables)
    assert done.returncode == 0, done.stderr
    assert f"of {NAME}: SUCCESS" in done.stdout
    [seen] = target.requests()
    assert seen.headers["x-cronlock-dry-run"] == "true"
    assert json.loads(seen.body) == {"older_than_minutes": 60, "dry_run": True}
    shown = cronlock("history", cwd=tmp_path, **variables)
    assert 'dry run; {"status": 200, "attempts": 1, "response": {"released": 3}' in shown.stdout
    [run] = json.loads(cronlock("history", "--json", cwd=tmp_path, **variables).stdout)
    assert run["dry_run"] is True
    assert run["result"]["response"] == {"released": 3}


def test_a_retried_run_sends_the_same_idempotency_key(tmp_path, db_url, env, target):
    variables = deployment(tmp_path, db_url, env)
    target.then(Reply(422, json={"error": "locked table"}))
    failed = cronlock("run", NAME, cwd=tmp_path, **variables)
    assert failed.returncode == 1
    assert "answered 422" in failed.stdout
    run_id = failed.stdout.split()[1]
    retried = cronlock("retry", run_id, cwd=tmp_path, **variables)
    assert retried.returncode == 0, retried.stderr
    first, second = target.requests()
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.headers["idempotency-key"].startswith(f"{NAME}:")
    assert first.headers["x-cronlock-run-id"] != second.headers["x-cronlock-run-id"]


@pytest.mark.parametrize("status", [200, 400])
def test_no_secret_reaches_a_log_line_or_a_stored_row(tmp_path, db_url, env, target, status):
    target.default = echo([status])
    variables = deployment(tmp_path, db_url, env)
    done = cronlock("run", NAME, cwd=tmp_path, LOG_LEVEL="DEBUG", LOG_FORMAT="json", **variables)
    assert done.returncode == (0 if status == 200 else 1), done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    answered = [line for line in lines if line.get("event", "").startswith("http_call_")]
    assert answered
    assert {line["target_host"] for line in answered} == {host_of(target)}
    assert answered[-1]["target_status"] == str(status)
    database = Database(db_url)
    try:
        stored = scalar(database, "SELECT json_agg(e)::text FROM job_execution e")
    finally:
        database.dispose()
    assert "Bearer ***" in stored  # the target echoed the token; it was masked
    for secret in ("token-1", CLIENT_SECRET, QUERY_KEY):
        assert secret not in done.stderr
        assert secret not in done.stdout
        assert secret not in stored


def test_a_bad_jobs_file_stops_startup_and_writes_nothing(tmp_path, db_url, env, database):
    bad = JOBS_TOML.replace("timeout_s = 20", 'timeout_s = "20s"')
    variables = deployment(tmp_path, db_url, env, toml=bad)
    refused = cronlock("worker", "--once", cwd=tmp_path, **variables)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"cronlock worker: error: JOBS_FILE={variables['JOBS_FILE']}: job[0] '{NAME}': "
        "field 'timeout_s': input should be a valid number, not '20s'"
    )
    unset = deployment(tmp_path, db_url, {k: v for k, v in env.items() if k != "MEMBERSHIP_URL"})
    missing = cronlock("worker", "--once", cwd=tmp_path, **unset)
    assert missing.returncode == 2
    assert "MEMBERSHIP_URL is not set" in missing.stderr
    assert scalar(database, "SELECT count(*) FROM job") == 0
    assert scalar(database, "SELECT count(*) FROM job_execution") == 0


def test_a_takeover_by_another_worker_process_sends_the_same_idempotency_key(
    tmp_path, db_url, env, database, target
):
    variables = deployment(tmp_path, db_url, env)
    register_before_latest(database, {NAME: "0 0 1 1 *"})
    target.then(Reply(hold=True))
    doomed = start_worker(tmp_path, db_url, "--once", **variables)
    try:
        wait_until(target.requests, timeout_s=30, what="the first worker's request")
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    wait_until(lambda: target.disconnected, timeout_s=5, what="the killed worker's socket to close")
    wait_for(
        database,
        "SELECT now() - heartbeat_at > interval '2 seconds' FROM job_execution WHERE attempt = 1",
    )
    taker = start_worker(tmp_path, db_url, "--once", **variables)
    try:
        taker.wait(timeout=60)
    finally:
        code, log = stop(taker)
    assert code == 0, log
    first, second = target.requests()
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.headers["x-cronlock-run-id"] != second.headers["x-cronlock-run-id"]
    with database.transaction() as session:
        runs = session.execute(
            text(
                "SELECT attempt, status, error_message, result FROM job_execution ORDER BY attempt"
            )
        ).all()
    assert [(r.attempt, r.status) for r in runs] == [(1, "FAILURE"), (2, "SUCCESS")]
    assert runs[0].error_message.startswith("abandoned:")
    assert runs[1].result["response"] == {"released": 3}


def test_a_stop_signal_drops_the_request_in_flight(tmp_path, db_url, env, database, target):
    variables = deployment(tmp_path, db_url, env)
    target.then(Reply(hold=True))
    command = start_cronlock("run", NAME, cwd=tmp_path, **variables)
    try:
        wait_until(target.requests, timeout_s=30, what="the command's request")
        signalled = time.monotonic()
        command.send_signal(signal.SIGTERM)
        _, stderr = command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
    assert command.returncode == 143, stderr
    assert time.monotonic() - signalled < 5
    wait_until(lambda: target.disconnected, timeout_s=5, what="the target to see the client go")
    [run] = rows(database)
    assert (run.status, run.error_message) == ("FAILURE", "interrupted by SIGTERM")
