"""The suite's own fixtures: a test server that stops answering ends the run with one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import clean_environ

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once it is closed


def test_a_dead_test_server_stops_the_suite_with_one_clear_line(tmp_path: Path):
    tests = tmp_path / "test_needs_db.py"
    tests.write_text("def test_a(db_url):\n    pass\n\n\ndef test_b(db_url):\n    pass\n")
    environ = {
        **clean_environ(),
        "TEST_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.integration.conftest",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "inner"),
            str(tests),
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert output.count("the test PostgreSQL server stopped answering") == 1
    assert "2 errors" not in output
