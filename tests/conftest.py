"""Environment hygiene: no test sees cronlock variables from the developer's shell."""

from __future__ import annotations

import os
import shutil
import tempfile

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


_OWN_BASETEMP = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Give this run a temp root of its own, unless --basetemp names one.

    pytest's default root is shared by every run of the same user, and it deletes
    all but the newest three: two runs at once would delete each other's servers.
    """
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="cronlock-pytest-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the temp root this run made for itself."""
    own = config.stash.get(_OWN_BASETEMP, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)


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
