"""Steering from the CLI: pausing and resuming jobs, stored where every claim reads it.

A pause is a column on the job's own row, which the claim reads in its locking
statement, or the single row of `global_pause` for `--all`, which it reads right
after the lock: every replica honours it at its next claim, with no restart.
Pausing waits for the claims in progress (it takes the job's row, or every job's
row, before it commits), so once `cronlock pause` returns, no new run starts.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.store.claiming import ensure_jobs
from app.store.database import Database
from app.store.models import GlobalPause, JobRow


@dataclass(frozen=True)
class Pause:
    """Who paused what, when and why."""

    paused_at: datetime
    reason: str
    paused_by: str


def operator() -> str:
    """user@host of whoever runs the command, recorded with a pause."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def pause_job(database: Database, name: str, *, reason: str, paused_by: str) -> None:
    """Pause one job on every replica."""
    ensure_jobs(database, [name])
    with database.connection() as conn:
        conn.execute(
            update(JobRow)
            .where(JobRow.name == name)
            .values(paused_at=func.now(), paused_reason=reason, paused_by=paused_by)
        )


def resume_job(database: Database, name: str) -> bool:
    """Resume one job; False when it was not paused."""
    with database.connection() as conn:
        resumed = conn.execute(
            update(JobRow)
            .where(JobRow.name == name, JobRow.paused_at.is_not(None))
            .values(paused_at=None, paused_reason=None, paused_by=None)
            .returning(JobRow.name)
        ).first()
    return resumed is not None


def open_alert(database: Database, name: str) -> bool:
    """Mark the job's failure streak alerted; True for the one worker that does it first."""
    with database.connection() as conn:
        return (
            conn.execute(
                update(JobRow)
                .where(JobRow.name == name, JobRow.alerted_at.is_(None))
                .values(alerted_at=func.now())
                .returning(JobRow.name)
            ).first()
            is not None
        )


def close_alert(database: Database, name: str) -> bool:
    """End the job's alerted streak; True for the one worker that does it first."""
    with database.connection() as conn:
        return (
            conn.execute(
                update(JobRow)
                .where(JobRow.name == name, JobRow.alerted_at.is_not(None))
                .values(alerted_at=None)
                .returning(JobRow.name)
            ).first()
            is not None
        )


def pause_all(database: Database, *, reason: str, paused_by: str) -> None:
    """Pause every job on every replica (individual pauses are kept as they are)."""
    statement = pg_insert(GlobalPause).values(paused_reason=reason, paused_by=paused_by)
    statement = statement.on_conflict_do_update(
        index_elements=[GlobalPause.id],
        set_={"paused_at": func.now(), "paused_reason": reason, "paused_by": paused_by},
    )
    with database.connection() as conn:
        conn.execute(statement)
        # Wait for the claims in progress: a claim that takes a job's row after this
        # commits reads the pause (see app.store.claiming._STATE).
        conn.execute(select(JobRow.name).order_by(JobRow.name).with_for_update())


def resume_all(database: Database) -> bool:
    """Lift `pause --all`; False when it was not set."""
    with database.connection() as conn:
        return conn.execute(delete(GlobalPause).returning(GlobalPause.id)).first() is not None


def pauses(database: Database) -> tuple[Pause | None, dict[str, Pause]]:
    """The global pause, if any, and each paused job's pause."""
    jobs = select(JobRow.name, JobRow.paused_at, JobRow.paused_reason, JobRow.paused_by).where(
        JobRow.paused_at.is_not(None)
    )
    everything = select(GlobalPause.paused_at, GlobalPause.paused_reason, GlobalPause.paused_by)
    with database.autocommit() as conn:
        row = conn.execute(everything).first()
        per_job = {
            r.name: Pause(r.paused_at, r.paused_reason or "", r.paused_by or "")
            for r in conn.execute(jobs)
        }
    return (Pause(row.paused_at, row.paused_reason, row.paused_by) if row else None), per_job
