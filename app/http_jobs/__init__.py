"""HTTP jobs: a declared call to a service's endpoint, with an M2M token, on a schedule.

`http_job(...)` defines one in a jobs module; JOBS_FILE lists more in TOML
(`registry_file`). The modules, from the declaration down to the wire:
`definition` (the job), `target` (what it calls, checked), `running` (the body:
plan, event loop, stop), `call` (attempts and retries), `tokens` (the
client-credentials cache), `policy` (pure rules: verdicts, waits, excerpts).
"""

from app.http_jobs.definition import http_job
from app.http_jobs.registry_file import load_jobs_file

__all__ = ["http_job", "load_jobs_file"]
