"""Finishing a run: writing its outcome through an outage, past values the server
refuses to store, and, for a transactional run, together with the body's writes.

Execution hands over how the run ended; what lands in the table is decided
here (`app.ops.observe` says so in the log).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from app.config import Settings
from app.core.backoff import Backoff
from app.core.claims import Claim
from app.core.outcomes import Outcome, RunStatus
from app.errors import DatabaseError, SchemaMissing, ValueRefused
from app.store.facade import Store
from app.store.runs import Finished, duplicate_success

logger = logging.getLogger(__name__)

# Rewrites of an outcome through an outage: 0.5 s, doubling, at most 5 s apart.
RECORD_BACKOFF = Backoff(0.5, cap_s=5.0)
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
    store: Store,
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
                finished = store.finish_in(conn, claim.run_id, ending)
                if finished.landed:
                    with store.database.translated_errors():
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
        store,
        claim,
        settings,
        ending,
        delay=delay,
        expires_at=expires_at,
        alive=alive,
        unanswered=unanswered,
    )


def _record(
    store: Store,
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
            finished = store.finish(
                claim.run_id, ending, retry_delay_s=delay, expires_at=expires_at
            )
            if finished.landed or not unanswered:
                return ending, finished
            # No longer RUNNING: an earlier write landed, or another worker took over.
            return store.finish_held(claim.run_id, unanswered) or (ending, finished)
        except SchemaMissing:
            raise  # no retry brings the tables back: the worker stops and says why
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
            attempts += 1
            time.sleep(RECORD_BACKOFF.delay_s(attempts))
