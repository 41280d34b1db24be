"""Environment hygiene: no test sees cronlock variables from the developer's shell."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from app.config import ENV_VARIABLES, JOB_VARIABLE_SUFFIXES

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


def _is_ours(key: str) -> bool:
    """One of the variables Settings.from_env reads, or a per-job one."""
    return key in ENV_VARIABLES or key.endswith(JOB_VARIABLE_SUFFIXES)


def clean_environ() -> dict[str, str]:
    """The process environment without cronlock's variables."""
    return {key: value for key, value in os.environ.items() if not _is_ours(key)}


@pytest.fixture(autouse=True)
def _strip_cronlock_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if _is_ours(key):
            monkeypatch.delenv(key)
