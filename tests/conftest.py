"""Environment hygiene: no test sees cronlock variables from the developer's shell."""

from __future__ import annotations

import os

import pytest

_OURS = (
    "DATABASE_URL",
    "CRONLOCK_DATA_DIR",
    "JOBS_MODULE",
    "CRON_SCHEDULE",
    "CRON_TZ",
    "STALE_JOB_THRESHOLD_SECONDS",
    "JOB_HISTORY_RETENTION_DAYS",
    "LOG_LEVEL",
    "LOG_FORMAT",
)


def clean_environ() -> dict[str, str]:
    """The process environment without cronlock's variables."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in _OURS and not key.endswith(("_ENABLED", "_SCHEDULE"))
    }


@pytest.fixture(autouse=True)
def _strip_cronlock_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key in _OURS or key.endswith(("_ENABLED", "_SCHEDULE")):
            monkeypatch.delenv(key)
