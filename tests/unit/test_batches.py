"""ctx.batches: per-item errors kept, a limit, a stop between batches, a summary."""

import logging

import pytest

from app.errors import InvalidJob
from app.runtime.batches import MAX_ITEM_ERRORS, Batches


class FakeRun:
    def __init__(self, *, stop_after_checks: int | None = None, dry_run: bool = False):
        self.logger = logging.getLogger("cronlock.job.test")
        self.dry_run = dry_run
        self.checks = 0
        self._stop_after = stop_after_checks

    def should_stop(self) -> bool:
        self.checks += 1
        return self._stop_after is not None and self.checks > self._stop_after

    def session(self):
        raise AssertionError("an iterable needs no session")


def test_every_item_is_handled_and_counted():
    seen: list[int] = []
    summary = Batches(FakeRun(), range(10), size=3, limit=None).each(seen.append)
    assert seen == list(range(10))
    assert summary == {
        "processed": 10,
        "succeeded": 10,
        "failed": 0,
        "errors": [],
        "errors_not_listed": 0,
        "stopped_early": False,
        "dry_run": False,
    }


def test_a_failing_item_is_kept_and_the_rest_go_on():
    def handle(item: int) -> None:
        if item % 2:
            raise ValueError(f"odd {item}")

    summary = Batches(FakeRun(), range(6), size=4, limit=None).each(handle)
    assert (summary["succeeded"], summary["failed"]) == (3, 3)
    assert summary["errors"][0] == {"item": "1", "error": "ValueError: odd 1"}


def test_item_errors_in_the_result_are_bounded():
    def fail(item: int) -> None:
        raise RuntimeError("no")

    summary = Batches(FakeRun(), range(100), size=10, limit=None).each(fail)
    assert len(summary["errors"]) == MAX_ITEM_ERRORS
    assert summary["errors_not_listed"] == 100 - MAX_ITEM_ERRORS


def test_the_limit_caps_the_items():
    seen: list[int] = []
    summary = Batches(FakeRun(), iter(range(1000)), size=7, limit=15).each(seen.append)
    assert seen == list(range(15))
    assert summary["processed"] == 15


def test_a_stop_is_honoured_between_batches():
    seen: list[int] = []
    run = FakeRun(stop_after_checks=2)  # two batches, then the worker asks to stop
    summary = Batches(run, range(100), size=5, limit=None).each(seen.append)
    assert seen == list(range(10))
    assert summary["stopped_early"] is True


def test_a_dry_run_is_said_in_the_summary():
    assert Batches(FakeRun(dry_run=True), [], size=1, limit=None).each(print)["dry_run"] is True


@pytest.mark.parametrize(("size", "limit"), [(0, None), (True, None), (10, -1), (10, 2.5)])
def test_bad_sizes_and_limits_are_refused(size, limit):
    with pytest.raises(InvalidJob, match="batches"):
        Batches(FakeRun(), [], size=size, limit=limit)
