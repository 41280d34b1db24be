"""What a jobs module imports: `@job`, `http_job`, and what a body and a pre-check are handed.

The public face for job authors; the definitions live in the layers
(`app.core.job`, `app.runtime.context`), which may move without breaking a jobs module.
"""

from app.core.job import Job, JobBody, JobResult, PreCheck, job
from app.http_jobs.definition import http_job
from app.runtime.context import PreCheckContext, RunContext

__all__ = [
    "Job",
    "JobBody",
    "JobResult",
    "PreCheck",
    "PreCheckContext",
    "RunContext",
    "http_job",
    "job",
]
