"""Telling people when a job keeps failing: a CRITICAL log line, and a webhook.

After ALERT_AFTER_FAILURES failures in a row (counted in the table, so failures
on different replicas add up), the first worker to mark the streak on the job's
row logs at CRITICAL and, with ALERT_WEBHOOK_URL set, POSTs one JSON payload;
when the job next succeeds, the worker that clears the mark sends the recovery.
One message per streak, whichever replicas ran it. Webhooks go out from a
background thread with a short timeout: a failing endpoint never holds up a run.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from typing import Any

from sqlalchemy import select

from app import metrics
from app.config import Settings
from app.control import close_alert, open_alert
from app.db import Database
from app.errors import DatabaseError
from app.history import streaks
from app.models import JobExecution, RunStatus

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5
_in_flight: list[threading.Thread] = []


def after_run(
    database: Database,
    settings: Settings,
    *,
    job_name: str,
    status: RunStatus,
    alert_open: bool,
    worker_id: str,
) -> None:
    """Open or close the job's alert after a run; never raises."""
    try:
        if status == RunStatus.SUCCESS:
            if alert_open and close_alert(database, job_name):
                _recovered(settings, job_name, worker_id)
        elif status == RunStatus.FAILURE:
            failures = streaks(database, [job_name]).get(job_name)
            count = failures.failures if failures else 0
            metrics.CONSECUTIVE_FAILURES.labels(job_name=job_name).set(count)
            if count >= settings.alert_after_failures and open_alert(database, job_name):
                _failing(database, settings, job_name, count, worker_id)
    except DatabaseError as exc:
        logger.warning(
            "could not update the alert state of %s: %s",
            job_name,
            exc.message,
            extra={"event": "alert_state_failed", "job": job_name},
        )


def _failing(
    database: Database, settings: Settings, job_name: str, failures: int, worker_id: str
) -> None:
    recent = (
        select(JobExecution.id, JobExecution.error_message)
        .where(JobExecution.job_name == job_name, JobExecution.status == RunStatus.FAILURE)
        .order_by(JobExecution.id.desc())
        .limit(min(failures, 20))
    )
    with database.autocommit() as conn:
        rows = conn.execute(recent).all()
    payload = {
        "event": "job_failing",
        "job": job_name,
        "failures": failures,
        "last_error": rows[0].error_message if rows else None,
        "run_ids": [row.id for row in rows],
        "worker_id": worker_id,
        "message": f"cronlock job {job_name} has failed {failures} times in a row",
    }
    logger.critical(
        "%s: %s",
        payload["message"],
        payload["last_error"],
        extra={"event": "job_failing", "job": job_name, "failures": failures},
    )
    _post(settings, payload)


def _recovered(settings: Settings, job_name: str, worker_id: str) -> None:
    payload = {
        "event": "job_recovered",
        "job": job_name,
        "worker_id": worker_id,
        "message": f"cronlock job {job_name} succeeded again",
    }
    logger.warning(payload["message"], extra={"event": "job_recovered", "job": job_name})
    _post(settings, payload)


def _post(settings: Settings, payload: dict[str, Any]) -> None:
    url = settings.alert_webhook_url
    if url is None:
        return
    body = json.dumps(payload).encode()

    def send() -> None:
        request = urllib.request.Request(  # noqa: S310 - the operator's http(s) URL
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S):  # noqa: S310
                pass
        except OSError as exc:
            logger.warning(
                "alert webhook failed: %s",
                exc,
                extra={"event": "alert_webhook_failed", "job": payload["job"]},
            )

    thread = threading.Thread(target=send, name="alert-webhook", daemon=True)
    thread.start()
    _in_flight.append(thread)


def flush(timeout_s: float = WEBHOOK_TIMEOUT_S + 1) -> None:
    """Wait (bounded) for webhooks still being sent, so a short-lived command delivers them."""
    while _in_flight:
        _in_flight.pop().join(timeout=timeout_s)
