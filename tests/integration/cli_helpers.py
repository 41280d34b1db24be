"""Running the real `cronlock` command in a subprocess, as an operator would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import clean_environ

REPO = Path(__file__).resolve().parents[2]


def cli_env(**variables: str) -> dict[str, str]:
    """A clean environment plus `variables`, with the project importable."""
    env = clean_environ()
    env["PYTHONPATH"] = str(REPO)
    env["LOG_FORMAT"] = "text"  # stderr is a pipe here; the JSON tests ask for json
    env.update(variables)
    return env


def cronlock(
    *args: str, cwd: Path, timeout: float = 60, **variables: str
) -> subprocess.CompletedProcess[str]:
    """Run `cronlock ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env=cli_env(**variables),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cronlock(*args: str, cwd: Path, **variables: str) -> subprocess.Popen[str]:
    """Start `cronlock ARGS` in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env=cli_env(**variables),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
