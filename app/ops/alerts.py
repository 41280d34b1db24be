"""Telling people when a job keeps failing: a CRITICAL log line, and a webhook.

After ALERT_AFTER_FAILURES failures in a row (counted in the table, so failures
on different replicas add up), the first worker to mark the streak on the job's
row logs at CRITICAL and, with ALERT_WEBHOOK_URL set, POSTs one JSON payload;
when the job next succeeds, the worker that clears the mark sends the recovery.
One message per streak, whichever replicas ran it. Webhooks go out in order from
one background thread, each tried up to three times: a failing endpoint never
holds up a run, and a brief outage of it does not lose the page.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from app.config import Settings
from app.core.backoff import Backoff
from app.core.outcomes import RunStatus
from app.errors import DatabaseError
from app.ops import metrics
from app.store.facade import Store

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5
# Three tries, 1 s and 5 s apart.
WEBHOOK_TRIES = 3
WEBHOOK_BACKOFF = Backoff(1.0, factor=5.0, cap_s=5.0)


def after_run(
    store: Store,
    settings: Settings,
    *,
    job_name: str,
    status: RunStatus,
    alert_open: bool,
    worker_id: str,
) -> None:
    """Open or close the job's alert after a run, and publish its failure streak; never raises."""
    failures = None
    try:
        if status == RunStatus.SUCCESS:
            if alert_open and store.close_alert(job_name):
                _recovered(settings, job_name, worker_id)
            return
        streak = store.streaks([job_name]).get(job_name)
        failures = streak.failures if streak else 0
        if failures >= settings.alert_after_failures and store.open_alert(job_name):
            _failing(store, settings, job_name, failures, worker_id)
    except DatabaseError as exc:
        logger.warning(
            "could not update the alert state of %s: %s",
            job_name,
            exc.message,
            extra={"event": "alert_state_failed", "job": job_name},
        )
    finally:
        if status == RunStatus.FAILURE:
            metrics.failure_streak(job_name, failures)


def _failing(
    store: Store, settings: Settings, job_name: str, failures: int, worker_id: str
) -> None:
    recent = store.recent_failures(job_name, limit=min(failures, 20))
    payload = {
        "event": "job_failing",
        "job": job_name,
        "failures": failures,
        "last_error": recent[0][1] if recent else None,
        "run_ids": [run_id for run_id, _ in recent],
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
    if settings.alert_webhook_url is not None:
        _OUTBOX.send(settings.alert_webhook_url, payload)


class _Outbox:
    """Webhook messages, delivered in the order they were sent by one daemon thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def send(self, url: str, payload: dict[str, Any]) -> None:
        with self._idle:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._deliver_forever, name="alert-webhook", daemon=True
                )
                thread.start()
                self._thread = thread
            self._pending += 1
        self._queue.put((url, payload))

    def flush(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending and (remaining := deadline - time.monotonic()) > 0:
                self._idle.wait(remaining)
            if self._pending:
                logger.warning(
                    "alert webhook failed: %d message(s) not delivered before exit",
                    self._pending,
                    extra={"event": "alert_webhook_failed"},
                )

    def _deliver_forever(self) -> None:
        while True:
            url, payload = self._queue.get()
            try:
                _deliver(url, payload)
            except Exception:  # a malformed answer, say: this thread serves every later one
                logger.warning(
                    "alert webhook failed",
                    exc_info=True,
                    extra={"event": "alert_webhook_failed", "job": payload["job"]},
                )
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


def _deliver(url: str, payload: dict[str, Any]) -> None:
    """POST `payload`, retrying what may pass (no answer, 5xx, 408, 429); log if it never does."""
    body = json.dumps(payload).encode()
    for delay_s in (0.0, *WEBHOOK_BACKOFF.delays_s(WEBHOOK_TRIES)):
        time.sleep(delay_s)
        request = urllib.request.Request(  # noqa: S310 - the operator's http(s) URL
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S):  # noqa: S310
                return
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response, and with it the socket
            error: OSError = exc
            if exc.code < 500 and exc.code not in (408, 429):
                break  # the endpoint refuses this message: trying again changes nothing
        except OSError as exc:
            error = exc
    logger.warning(
        "alert webhook failed: %s",
        error,
        extra={"event": "alert_webhook_failed", "job": payload["job"]},
    )


_OUTBOX = _Outbox()


def flush(timeout_s: float = WEBHOOK_TIMEOUT_S + 1) -> None:
    """Wait (bounded) for webhooks still being sent, so a short-lived command delivers them.

    One try's worth: a command, or a worker stopping within its stop timeout,
    does not wait for a dead endpoint's retries.
    """
    _OUTBOX.flush(timeout_s)
