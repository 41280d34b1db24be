"""Per job and UTC day, the outcomes recorded and how long the runs took; an index for
a job's runs, newest first.

The console's overview shows each job's runs, failures, average and p95 over the
retention window. Counting a million runs on every page view is too slow, so a
trigger adds each outcome to its job's row for the day it was recorded, in the
statement that records it (no extra round trip). Durations are kept as a
histogram of buckets an eighth of a power of two wide (`{"bucket": count}`),
which merges across days and gives the p95 to within about 4.5%.

Rows already recorded are counted once here. The prune job deletes the days it
prunes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Bucket 0: under a millisecond; bucket b >= 1: [2^((b-1)/8), 2^(b/8)) milliseconds.
_BUCKET_FUNCTION = """
CREATE FUNCTION cronlock_duration_bucket(ms double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ms < 1 THEN 0
                ELSE 1 + floor(8 * ln(ms) / ln(2.0))::integer END
$$
"""

_COUNT_FUNCTION = """
CREATE FUNCTION cronlock_count_outcome() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ran boolean := NEW.status IN ('SUCCESS', 'FAILURE');
    took_ms double precision :=
        extract(epoch FROM NEW.completed_at - NEW.started_at) * 1000;
    bucket text := cronlock_duration_bucket(took_ms)::text;
BEGIN
    INSERT INTO job_day_counts AS d
        (job_name, day, runs, failures, skipped, missed, duration_ms_sum, durations)
    VALUES (
        NEW.job_name,
        (NEW.completed_at AT TIME ZONE 'UTC')::date,
        ran::integer,
        (NEW.status = 'FAILURE')::integer,
        (NEW.status = 'SKIPPED')::integer,
        (NEW.status = 'MISSED')::integer,
        CASE WHEN ran THEN took_ms ELSE 0 END,
        CASE WHEN ran THEN jsonb_build_object(bucket, 1) ELSE '{}'::jsonb END
    )
    ON CONFLICT (job_name, day) DO UPDATE SET
        runs = d.runs + EXCLUDED.runs,
        failures = d.failures + EXCLUDED.failures,
        skipped = d.skipped + EXCLUDED.skipped,
        missed = d.missed + EXCLUDED.missed,
        duration_ms_sum = d.duration_ms_sum + EXCLUDED.duration_ms_sum,
        durations = CASE WHEN ran THEN jsonb_set(
            d.durations, ARRAY[bucket],
            to_jsonb(coalesce((d.durations ->> bucket)::integer, 0) + 1))
            ELSE d.durations END;
    RETURN NULL;
END
$$
"""

_TRIGGERS = """
CREATE TRIGGER job_execution_counted_when_recorded
    AFTER INSERT ON job_execution FOR EACH ROW
    WHEN (NEW.completed_at IS NOT NULL)
    EXECUTE FUNCTION cronlock_count_outcome();
CREATE TRIGGER job_execution_counted_when_finished
    AFTER UPDATE OF completed_at ON job_execution FOR EACH ROW
    WHEN (OLD.completed_at IS NULL AND NEW.completed_at IS NOT NULL)
    EXECUTE FUNCTION cronlock_count_outcome();
"""

_BACKFILL = """
WITH outcome AS (
    SELECT job_name,
           (completed_at AT TIME ZONE 'UTC')::date AS day,
           status,
           status IN ('SUCCESS', 'FAILURE') AS ran,
           extract(epoch FROM completed_at - started_at) * 1000 AS took_ms
    FROM job_execution
    WHERE completed_at IS NOT NULL
),
per_bucket AS (
    SELECT job_name, day, cronlock_duration_bucket(took_ms)::text AS bucket, count(*) AS n
    FROM outcome WHERE ran
    GROUP BY 1, 2, 3
),
histogram AS (
    SELECT job_name, day, jsonb_object_agg(bucket, n) AS durations
    FROM per_bucket GROUP BY 1, 2
),
counts AS (
    SELECT job_name, day,
           count(*) FILTER (WHERE ran) AS runs,
           count(*) FILTER (WHERE status = 'FAILURE') AS failures,
           count(*) FILTER (WHERE status = 'SKIPPED') AS skipped,
           count(*) FILTER (WHERE status = 'MISSED') AS missed,
           coalesce(sum(took_ms) FILTER (WHERE ran), 0) AS duration_ms_sum
    FROM outcome GROUP BY 1, 2
)
INSERT INTO job_day_counts
    (job_name, day, runs, failures, skipped, missed, duration_ms_sum, durations)
SELECT c.job_name, c.day, c.runs, c.failures, c.skipped, c.missed, c.duration_ms_sum,
       coalesce(h.durations, '{}'::jsonb)
FROM counts c LEFT JOIN histogram h USING (job_name, day)
"""


def upgrade() -> None:
    op.create_table(
        "job_day_counts",
        sa.Column(
            "job_name", sa.Text(), sa.ForeignKey("job.name", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("missed", sa.Integer(), nullable=False),
        sa.Column("duration_ms_sum", sa.Float(), nullable=False),
        sa.Column("durations", postgresql.JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("job_name", "day", name="pk_job_day_counts"),
    )
    op.create_index("ix_job_day_counts_day", "job_day_counts", ["day"])
    op.create_index("ix_job_execution_job_name_id", "job_execution", ["job_name", "id"])
    op.execute(_BUCKET_FUNCTION)
    op.execute(_COUNT_FUNCTION)
    # The triggers first: creating them locks out writers until this migration commits,
    # so the backfill counts every row recorded before, and the triggers every one after.
    op.execute(_TRIGGERS)
    op.execute(_BACKFILL)


def downgrade() -> None:
    op.execute("DROP TRIGGER job_execution_counted_when_finished ON job_execution")
    op.execute("DROP TRIGGER job_execution_counted_when_recorded ON job_execution")
    op.execute("DROP FUNCTION cronlock_count_outcome()")
    op.execute("DROP FUNCTION cronlock_duration_bucket(double precision)")
    op.drop_index("ix_job_execution_job_name_id", table_name="job_execution")
    op.drop_table("job_day_counts")
