"""The jobs this deployment runs, in run order: add one line to register a job."""

from app.jobs.prune_job_history import prune_job_history
from app.jobs.redact_stored_secrets import redact_stored_secrets
from app.jobs.report_database_stats import report_database_stats

JOBS = [
    prune_job_history,
    report_database_stats,
    redact_stored_secrets,
]
