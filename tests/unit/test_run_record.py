"""How a run is shown: a duration only for runs that ran."""

from datetime import UTC, datetime, timedelta

import pytest

from app.store.history import RunRecord

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def record(status: str, completed_at: datetime | None) -> RunRecord:
    return RunRecord(1, "a", status, START, "schedule", 1, START, completed_at, "w", None, None)


@pytest.mark.parametrize("status", ["SUCCESS", "FAILURE"])
def test_a_run_that_ran_has_its_duration(status: str):
    assert record(status, START + timedelta(milliseconds=250)).duration_s == 0.25


@pytest.mark.parametrize("status", ["SKIPPED", "MISSED"])
def test_an_outcome_that_ran_nothing_has_no_duration(status: str):
    assert record(status, START + timedelta(seconds=5)).duration_s is None


def test_a_running_run_has_no_duration_yet():
    assert record("RUNNING", None).duration_s is None
