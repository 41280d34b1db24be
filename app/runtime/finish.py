"""Writing a run's outcome: through an outage, past values the server refuses to
store, and, for a transactional run, together with the body's writes.

The runner hands over how the run ended; what lands in the table, and the log
line that says so, are decided here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from app.config import Settings
from app.core.claims import Claim
from app.errors import DatabaseError, ValueRefused
from app.store.database import Database
from app.store.driver import DriverConnection
from app.store.models import RunStatus
from app.store.runs import (
    Finished,
    Outcome,
    duplicate_success,
    finish_held,
    finish_on,
    finish_run,
    takeover_of,
)

logger = logging.getLogger(__name__)

RECORD_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0)
UNSTORABLE = Outcome(
    RunStatus.FAILURE, error="outcome not stored: the server refused its values (see the log)"
)


def close_transaction(conn: Connection | None) -> None:
    """Roll back whatever is left of the run's transaction and return the connection."""
    if conn is None:
        return
    try:
        conn.rollback()
    finally:
        conn.close()


def record_outcome(
    database: Database,
    conn: Connection | None,
    claim: Claim,
    settings: Settings,
    ending: Outcome,
    *,
    delay: float | None,
    expires_at: datetime | None,
    alive: Callable[[], None],
) -> tuple[Outcome, Finished]:
    """Record the outcome; for a transactional run (`conn`), SUCCESS commits with the
    body's writes, or not at all, and a FAILURE rolls them back.

    Returns the outcome actually recorded, which is FAILURE when the commit failed
    or the body rolled the transaction back.
    """
    unanswered: list[Outcome] = []
    if conn is not None:
        if ending.status == RunStatus.SUCCESS and not conn.in_transaction():
            ending = Outcome(RunStatus.FAILURE, error="the job rolled its transaction back")
        try:
            if ending.status == RunStatus.SUCCESS:
                with database.translated_errors():
                    finished = finish_on(DriverConnection.under(conn), claim.run_id, ending)
                    if finished.landed:
                        conn.commit()
                    return ending, finished
        except DatabaseError as exc:
            # Most likely the transaction is lost with its writes: record that instead.
            # If only the COMMIT's answer was lost, the run holds the SUCCESS.
            unanswered.append(ending)
            ending = Outcome(RunStatus.FAILURE, error=f"commit failed: {exc.message}")
        except IntegrityError:
            ending = duplicate_success(claim.run_id)  # the body's writes roll back with it
        finally:
            close_transaction(conn)
    return _record(
        database,
        claim,
        settings,
        ending,
        delay=delay,
        expires_at=expires_at,
        alive=alive,
        unanswered=unanswered,
    )


def _record(
    database: Database,
    claim: Claim,
    settings: Settings,
    ending: Outcome,
    *,
    delay: float | None,
    expires_at: datetime | None,
    alive: Callable[[], None],
    unanswered: list[Outcome],
) -> tuple[Outcome, Finished]:
    """Write the outcome, retrying through an outage until it lands or the run goes stale.

    Returns the outcome written: FAILURE in place of one the server refused to store,
    or one of `unanswered` (writes whose answers were lost) if that had landed.
    `alive` is called between tries: retrying is progress, not a wedged worker.
    """
    give_up_at = time.monotonic() + settings.stale_threshold_s
    attempts = 0
    while True:
        try:
            finished = finish_run(
                database, claim.run_id, ending, retry_delay_s=delay, expires_at=expires_at
            )
            if finished.landed or not unanswered:
                return ending, finished
            # No longer RUNNING: an earlier write landed, or another worker took over.
            return finish_held(database, claim.run_id, unanswered) or (ending, finished)
        except DatabaseError as exc:
            if isinstance(exc, ValueRefused) and ending != UNSTORABLE:
                # Writing the same values again would fail again: record why, as FAILURE;
                # and if even that is refused, a FAILURE that holds nothing but ASCII.
                logger.error(
                    "could not record run %s as %s: %s; recording FAILURE instead",
                    claim.run_id,
                    ending.status,
                    exc.message,
                    extra={"event": "run_record_failed", "run_id": claim.run_id},
                )
                plain = ending.status == RunStatus.FAILURE and ending.result is None
                detailed = Outcome(RunStatus.FAILURE, error=f"outcome not stored: {exc.message}")
                ending = UNSTORABLE if plain else detailed
                continue
            if ending not in unanswered:
                unanswered.append(ending)  # it may have landed with only its answer lost
            if attempts == 0:
                logger.error(
                    "could not record run %s as %s: %s; retrying",
                    claim.run_id,
                    ending.status,
                    exc.message,
                    extra={"event": "run_record_failed", "run_id": claim.run_id},
                )
            if time.monotonic() >= give_up_at:
                logger.error(
                    "gave up recording run %s; another worker will mark it abandoned",
                    claim.run_id,
                    extra={"event": "run_record_abandoned", "run_id": claim.run_id},
                )
                return ending, Finished(False)
            alive()
            time.sleep(RECORD_RETRY_DELAYS_S[min(attempts, len(RECORD_RETRY_DELAYS_S) - 1)])
            attempts += 1


def _log_fenced(database: Database, claim: Claim, ending: Outcome, extra: dict[str, Any]) -> None:
    """A late finish after a takeover: say loudly what is recorded instead, and who runs now."""
    try:
        takeover = takeover_of(database, claim.run_id, claim.job_name)
    except DatabaseError:
        takeover = None
    recorded = f"{takeover.status}: {takeover.error_message}" if takeover else "unknown"
    current = takeover.current_run_id if takeover else None
    logger.error(
        "run %s ended %s but was no longer ours, so nothing was recorded; it stays %s; "
        "run %s has taken the job over",
        claim.run_id,
        ending.status,
        recorded,
        current if current is not None else "(none yet)",
        extra={
            "event": "run_fenced",
            "status": str(ending.status),
            "taken_over_by_run_id": current,
            **extra,
        },
    )


def log_outcome(
    database: Database,
    claim: Claim,
    ending: Outcome,
    *,
    duration_ms: float,
    finished: Finished,
    fields: dict[str, Any],
) -> None:
    """One line for how the run ended: succeeded, failed, or fenced off by a takeover."""
    extra = {"duration_ms": duration_ms, **fields}
    if not finished.landed:
        _log_fenced(database, claim, ending, extra)
    elif ending.status == RunStatus.SUCCESS:
        logger.info(
            "run %s succeeded in %.0f ms%s",
            claim.run_id,
            duration_ms,
            f": {json.dumps(ending.result)}" if ending.result else "",
            extra={"event": "run_succeeded", **extra},
        )
    else:
        retry = f"; retry at {finished.retry_at.isoformat()}" if finished.retry_at else ""
        logger.error(
            "run %s failed after %.0f ms: %s%s",
            claim.run_id,
            duration_ms,
            ending.error,
            retry,
            extra={"event": "run_failed", "error": ending.error, **extra},
        )
