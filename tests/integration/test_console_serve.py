"""`cronlock serve` and the worker's console, as real processes: runs started over HTTP
are run by the serving process, and one that outlives a stop is recorded, not lost."""

from __future__ import annotations

import signal
import socket
import textwrap
from pathlib import Path

import httpx

from app.store.database import Database
from tests.integration.cli_helpers import cronlock, start_cronlock
from tests.integration.faults import scalar, wait_for
from tests.integration.helpers import wait_until

TOKEN = "ops:console-token-for-tests-0123"
AUTH = {"Authorization": "Bearer console-token-for-tests-0123"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _jobs(folder: Path) -> Path:
    """A job whose body waits for a file the test writes (so "still running" is certain),
    and a quick one with parameters."""
    module = folder / "console_jobs.py"
    module.write_text(
        textwrap.dedent(
            f"""
            import time
            from pathlib import Path
            from pydantic import BaseModel
            from app.job import job

            RELEASE = Path({str(folder / "release")!r})

            @job("held", schedule="@yearly")
            def held(ctx):
                while not RELEASE.exists():  # never written: only a stop ends it
                    time.sleep(0.02)

            @job("polite", schedule="@yearly")
            def polite(ctx):
                while not ctx.should_stop():
                    time.sleep(0.02)
                return {{"stopped": "when asked"}}

            class Size(BaseModel):
                limit: int = 10

            @job("sized", schedule="@yearly", params=Size)
            def sized(ctx):
                return {{"limit": ctx.params.limit, "dry_run": ctx.dry_run}}

            JOBS = [held, polite, sized]
            """
        )
    )
    return module


def _serve(folder: Path, db_url: str, port: int, *, command: str = "serve"):
    return start_cronlock(
        command,
        cwd=folder,
        DATABASE_URL=db_url,
        JOBS_MODULE=str(_jobs(folder)),
        METRICS_PORT=str(port),
        METRICS_HOST="127.0.0.1",
        CONSOLE_TOKEN=TOKEN,
        SHUTDOWN_GRACE_SECONDS="1",
    )


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_serve_needs_a_port_and_good_tokens(tmp_path: Path, db_url: str):
    no_port = cronlock("serve", cwd=tmp_path, DATABASE_URL=db_url)
    assert no_port.returncode == 2
    assert "`cronlock serve` needs METRICS_PORT" in no_port.stderr
    weak = cronlock(
        "serve", cwd=tmp_path, DATABASE_URL=db_url, METRICS_PORT="9", CONSOLE_TOKEN="short"
    )
    assert weak.returncode == 2
    assert "CONSOLE_TOKEN entry 1 (console) is 5 characters" in weak.stderr


def test_a_run_started_over_http_runs_in_the_serving_process(
    tmp_path: Path, db_url: str, database: Database
):
    port = _free_port()
    process = _serve(tmp_path, db_url, port)
    try:
        wait_until(lambda: _up(port), timeout_s=30, what="the console to answer")
        base = f"http://127.0.0.1:{port}"
        answer = httpx.post(
            f"{base}/api/jobs/sized/runs", json={"params": {"limit": 3}}, headers=AUTH
        )
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        wait_for(database, "SELECT status = 'SUCCESS' FROM job_execution WHERE id = :i", i=run_id)
        run = httpx.get(f"{base}/api/runs/{run_id}").json()
        assert run["params"] == {"limit": 3}
        assert run["result"] == {"limit": 3, "dry_run": False}
        assert run["requested_by"] == "console:ops"
        assert run["worker_id"].endswith(f":{process.pid}")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0


def test_runs_still_going_when_serve_stops_are_asked_to_stop_then_recorded(
    tmp_path: Path, db_url: str, database: Database
):
    port = _free_port()
    process = _serve(tmp_path, db_url, port)
    try:
        wait_until(lambda: _up(port), timeout_s=30, what="the console to answer")
        base = f"http://127.0.0.1:{port}"
        started = {}
        for name in ("held", "polite"):
            answer = httpx.post(f"{base}/api/jobs/{name}/runs", headers=AUTH)
            assert answer.status_code == 202, answer.text
            started[name] = answer.json()["run_id"]
        assert httpx.get(f"{base}/api/runs/{started['held']}").json()["status"] == "RUNNING"
        # The run holds its job: a second request is told so at once.
        again = httpx.post(f"{base}/api/jobs/held/runs", headers=AUTH)
        assert again.status_code == 409
        assert "still running" in again.json()["error"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr

    def outcome(run_id: int) -> tuple[str, str | None, object]:
        row = scalar(
            database,
            "SELECT json_build_array(status, error_message, result) FROM job_execution "
            "WHERE id = :i",
            i=run_id,
        )
        return row[0], row[1], row[2]

    # A body that checks should_stop() ends on its own; one that does not is recorded
    # FAILURE once the grace is over, so no run is left RUNNING by the stop.
    assert outcome(started["polite"]) == ("SUCCESS", None, {"stopped": "when asked"})
    status, error, _ = outcome(started["held"])
    assert status == "FAILURE"
    assert "the process running it stopped" in (error or "")


def test_the_worker_serves_the_console_and_runs_what_it_is_asked(
    tmp_path: Path, db_url: str, database: Database
):
    port = _free_port()
    process = _serve(tmp_path, db_url, port, command="worker")
    try:
        wait_until(lambda: _up(port), timeout_s=30, what="the console to answer")
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/jobs/sized/runs",
            json={"params": {"limit": 5}, "dry_run": True},
            headers=AUTH,
        )
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        wait_for(database, "SELECT status = 'SUCCESS' FROM job_execution WHERE id = :i", i=run_id)
        assert scalar(database, "SELECT dry_run FROM job_execution WHERE id = :i", i=run_id)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0
