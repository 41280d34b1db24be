"""The sweep for abandoned runs: planned, and kept planned when the database does not answer."""

from datetime import UTC, datetime, timedelta

import pytest

from app.errors import DatabaseUnavailable
from app.runtime.sweep import StaleRunSweep
from app.store.claiming import StaleSweep

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeStore:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def close_stale_runs(self, **_):
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def sweep_for(store) -> StaleRunSweep:
    return StaleRunSweep(store, [], stale_after_s=60, interval_s=15, worker_id="w")


def test_nothing_is_read_until_a_sweep_is_due():
    store = FakeStore()
    sweep = sweep_for(store)
    assert sweep.sweep(NOW) == []
    sweep.saw_running(NOW)
    assert sweep.next_at == NOW + timedelta(seconds=75)
    assert sweep.sweep(NOW + timedelta(seconds=74)) == []
    assert store.calls == 0


def test_the_next_sweep_is_planned_from_what_is_still_running():
    store = FakeStore(StaleSweep(closed=[], next_stale_in_s=40.0))
    sweep = sweep_for(store)
    sweep.expect(NOW)
    sweep.sweep(NOW)
    assert sweep.next_at == NOW + timedelta(seconds=41)


def test_nothing_running_means_no_sweep_planned():
    sweep = sweep_for(FakeStore(StaleSweep(closed=[], next_stale_in_s=None)))
    sweep.expect(NOW)
    sweep.sweep(NOW)
    assert sweep.next_at is None


def test_a_sweep_the_database_did_not_answer_stays_due():
    store = FakeStore(DatabaseUnavailable("down"), StaleSweep(closed=["run"], next_stale_in_s=None))
    sweep = sweep_for(store)
    sweep.expect(NOW)
    with pytest.raises(DatabaseUnavailable):
        sweep.sweep(NOW)
    assert sweep.next_at == NOW  # still due: the dead worker's run is not forgotten
    assert sweep.sweep(NOW + timedelta(seconds=1)) == ["run"]
