"""The tables, as typed SQLAlchemy models; only Alembic revisions change the schema.

``job`` holds one row per registered job. It exists so that the claim always has a
row to lock: ``SELECT ... FOR UPDATE`` on a run that does not exist yet locks
nothing, which is how two workers both start the same job.

``job_execution`` holds one row per run. Partial unique indexes make the two
promises of the lock hold even if the code had a bug: at most one RUNNING run per
job, and at most one SUCCESS per (job, scheduled instant).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with constraint names Alembic can reproduce."""

    metadata = MetaData(naming_convention=NAMING)


class JobRow(Base):
    """One row per job name: the row every claim locks."""

    __tablename__ = "job"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Set by `cronlock pause`; every replica reads it with the claim's row lock.
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    paused_reason: Mapped[str | None] = mapped_column(Text)
    paused_by: Mapped[str | None] = mapped_column(Text)
    # When the current failure streak was alerted on; cleared by the next success.
    alerted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class GlobalPause(Base):
    """`cronlock pause --all`: at most one row, read by every claim."""

    __tablename__ = "global_pause"
    __table_args__ = (CheckConstraint("id", name="single_row"),)

    id: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("true"))
    paused_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    paused_reason: Mapped[str] = mapped_column(Text)
    paused_by: Mapped[str] = mapped_column(Text)


class JobExecution(Base):
    """One run of a job for one scheduled instant."""

    __tablename__ = "job_execution"
    __table_args__ = (
        CheckConstraint(
            "status IN ('RUNNING', 'SUCCESS', 'FAILURE', 'SKIPPED', 'MISSED')",
            name="status",
        ),
        CheckConstraint("trigger IN ('schedule', 'manual')", name="trigger"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        CheckConstraint(
            "(status = 'RUNNING') = (completed_at IS NULL)",
            name="completed_iff_terminal",
        ),
        Index(
            "uq_job_execution_one_running_per_job",
            "job_name",
            unique=True,
            postgresql_where=text("status = 'RUNNING'"),
        ),
        Index(
            "uq_job_execution_one_success_per_instant",
            "job_name",
            "scheduled_for",
            unique=True,
            postgresql_where=text("status = 'SUCCESS'"),
        ),
        UniqueConstraint(
            "job_name", "scheduled_for", "attempt", name="uq_job_execution_instant_attempt"
        ),
        Index(
            "ix_job_execution_retry_at",
            "retry_at",
            postgresql_where=text("retry_at IS NOT NULL"),
        ),
        Index("ix_job_execution_started_at", "started_at"),
        # A job's runs newest first, page by page (the console's run history).
        Index("ix_job_execution_job_name_id", "job_name", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    job_name: Mapped[str] = mapped_column(Text, ForeignKey("job.name", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(Text)
    scheduled_for: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    trigger: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    heartbeat_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker_id: Mapped[str] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    # none_as_null: a body that returns None leaves SQL NULL, not the JSON value null.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    # Set on a FAILURE that will be retried, cleared when the retry claims it: the
    # pending retries are the few rows of a small partial index.
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A manual run's parameters (validated by the job's model), whether it was a dry
    # run, and who asked for it; NULL, false and NULL for scheduled runs.
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    dry_run: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    requested_by: Mapped[str | None] = mapped_column(Text)


class JobDayCounts(Base):
    """Per job and UTC day, the outcomes recorded and their durations.

    Written only by a trigger on job_execution (revision 0006), in the statement that
    records each outcome: the console's statistics read these few rows instead of
    counting every run. `durations` maps a bucket (see `app.core.stats`) to its count.
    """

    __tablename__ = "job_day_counts"
    __table_args__ = (Index("ix_job_day_counts_day", "day"),)

    job_name: Mapped[str] = mapped_column(
        Text, ForeignKey("job.name", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    runs: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer)
    missed: Mapped[int] = mapped_column(Integer)
    duration_ms_sum: Mapped[float] = mapped_column(Float)
    durations: Mapped[dict[str, int]] = mapped_column(JSONB)
