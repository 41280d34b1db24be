"""Metrics and health scraped over HTTP from a real worker; notify messages on a real socket."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.job import Job
from app.ops import metrics
from app.registry import JobRegistry, configure
from app.runtime.worker import Worker
from app.store.database import Database
from app.store.facade import Store
from tests.integration.faults import start_worker, stop, wait_for, wait_for_log
from tests.integration.helpers import INSTANT, rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_and_health_over_http(database: Database, db_url: str, tmp_path: Path):
    port = _free_port()
    worker = start_worker(
        tmp_path, db_url, FAULT_JOBS="2", METRICS_PORT=str(port), METRICS_HOST="127.0.0.1"
    )
    try:
        wait_for(database, "SELECT count(*) >= 4 FROM job_execution WHERE status = 'SUCCESS'")
        wait_for_log(worker, "serving the console")
        assert _get(port, "/healthz") == (200, "alive\n")
        assert _get(port, "/readyz") == (200, "ready\n")
        assert _get(port, "/nope")[0] == 404
        status, body = _get(port, "/metrics")
        assert status == 200
        samples = _samples(body)
        runs = samples[("cronlock_runs_total", (("job_name", "job-00"), ("outcome", "success")))]
        assert runs >= 1
        assert samples[("cronlock_running", (("job_name", "job-00"),))] in (0, 1)
        assert samples[("cronlock_job_period_seconds", (("job_name", "job-01"),))] == 1
        assert samples[("cronlock_consecutive_failures", (("job_name", "job-00"),))] == 0
        last_success = samples[
            ("cronlock_last_success_timestamp_seconds", (("job_name", "job-00"),))
        ]
        assert abs(time.time() - last_success) < 60
        assert ("cronlock_run_duration_seconds_count", (("job_name", "job-00"),)) in samples
        assert any(name == "cronlock_worker_info" for name, _ in samples)
        assert abs(time.time() - samples[("cronlock_last_tick_timestamp_seconds", ())]) < 60
    finally:
        code, log = stop(worker)
    assert code == 0, log


def test_readiness_fails_when_the_database_is_gone(
    database: Database, db_url: str, tmp_path: Path, pg_admin_url
):
    from tests.integration.test_reliability import refuse_connections

    port = _free_port()
    worker = start_worker(tmp_path, db_url, METRICS_PORT=str(port), METRICS_HOST="127.0.0.1")
    try:
        wait_for_log(worker, "serving the console")
        assert _get(port, "/readyz")[0] == 200
        refuse_connections(pg_admin_url, db_url, refused=True)
        status, body = _get(port, "/readyz")
        assert status == 503
        assert "cannot reach the database" in body
        assert _get(port, "/healthz")[0] == 200  # alive, just not ready
    finally:
        refuse_connections(pg_admin_url, db_url, refused=False)
        code, log = stop(worker)
    assert code == 0, log


def test_systemd_notify_ready_watchdog_stopping(database: Database, db_url: str, tmp_path: Path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        worker = start_worker(tmp_path, db_url, NOTIFY_SOCKET=str(path), WATCHDOG_USEC="2000000")
        try:
            messages = []
            while "READY=1" not in messages:
                messages.append(sock.recv(256).decode())
            watchdogs = 0
            while watchdogs < 2:  # the loop keeps the watchdog fed
                if sock.recv(256).decode() == "WATCHDOG=1":
                    watchdogs += 1
        finally:
            code, log = stop(worker)
        tail = []
        sock.settimeout(5)
        try:
            while True:
                tail.append(sock.recv(256).decode())
        except TimeoutError:
            pass
    assert code == 0, log
    assert "STOPPING=1" in tail


@pytest.mark.slow
def test_a_long_run_keeps_the_worker_alive(database: Database, db_url: str, tmp_path: Path):
    """A run longer than the liveness window blocks the loop; its lease keeps /healthz up."""
    port = _free_port()
    worker = start_worker(
        tmp_path,
        db_url,
        FAULT_SLEEP_S="40",
        FAULT_SCHEDULE="*/2 * * * * *",
        METRICS_PORT=str(port),
        METRICS_HOST="127.0.0.1",
        HEARTBEAT_INTERVAL_SECONDS="1",
        STALE_JOB_THRESHOLD_SECONDS="5",
    )
    try:
        wait_for(database, "SELECT count(*) = 1 FROM job_execution WHERE status = 'RUNNING'")
        # Longer than the liveness window, which is 30 s at the least whatever the
        # settings (6 x LIVENESS_INTERVAL_S): this wait cannot be shortened from here.
        deadline = time.monotonic() + 35
        while time.monotonic() < deadline:
            assert _get(port, "/healthz")[0] == 200
            time.sleep(1)
    finally:
        code, log = stop(worker, timeout_s=60)
    assert code == 0, log


def test_a_restarted_worker_publishes_the_open_failing_streak(database: Database):
    """The failing alert compares the last failure with the last success: both must survive."""

    def broken(ctx):
        raise RuntimeError("down")

    name = "restart-streak"
    settings = Settings.from_env({})
    jobs = configure(JobRegistry([Job(name=name, body=broken, schedule="* * * * *")]), settings)
    before = Worker(Store(database), jobs, settings, worker_id="test:1", clock=lambda: INSTANT)
    before.start(now=INSTANT)
    for minute in (1, 2, 3):
        before.tick(INSTANT.replace(minute=minute))
    metrics.LAST_FAILURE.remove(name)
    metrics.CONSECUTIVE_FAILURES.remove(name)  # what a new process starts with
    Worker(Store(database), jobs, settings, worker_id="test:2", clock=lambda: INSTANT).start(
        now=INSTANT
    )
    last_failed = max(r.completed_at for r in rows(database) if r.status == "FAILURE")
    labels = {"job_name": name}
    assert metrics.REGISTRY.get_sample_value("cronlock_consecutive_failures", labels) == 3
    failed_at = metrics.REGISTRY.get_sample_value("cronlock_last_failure_timestamp_seconds", labels)
    assert failed_at == last_failed.timestamp()
