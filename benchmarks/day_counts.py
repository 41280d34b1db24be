"""Runs inserted in bulk, then counted into job_day_counts once, as revision 0006 counts
the runs recorded before it.

The trigger of revision 0006 adds each outcome to its (job, day) row in the
statement that records it. One INSERT of many runs updates each (job, day) row
once per run, all in one transaction: no earlier version of the row can be pruned
before the commit, and each update reaches the live one through all of them, so
the insert slows down with the square of the runs per (job, day). A million runs
on a few hundred (job, day) rows take many minutes that way. The benchmarks'
fills therefore run with the user triggers of `job_execution` disabled, and
`recount` then fills job_day_counts with the revision's own backfill statement:
the rows the trigger would have left.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import psycopg

REVISION = (
    Path(__file__).resolve().parent.parent / "alembic" / "versions" / "20261203_0006_day_counts.py"
)


@cache
def backfill_statement() -> str:
    """Revision 0006's statement that counts the runs already recorded."""
    spec = importlib.util.spec_from_file_location("day_counts_revision", REVISION)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {REVISION}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module._BACKFILL)


@contextmanager
def triggers_off(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A transaction in which job_execution's user triggers do not fire."""
    with conn.transaction():
        conn.execute("ALTER TABLE job_execution DISABLE TRIGGER USER")
        yield
        conn.execute("ALTER TABLE job_execution ENABLE TRIGGER USER")


def recount(conn: psycopg.Connection[Any]) -> float:
    """Count every finished run into job_day_counts afresh; return the seconds taken."""
    started = time.perf_counter()
    with conn.transaction():
        conn.execute("TRUNCATE job_day_counts")
        conn.execute(backfill_statement())
    return time.perf_counter() - started
