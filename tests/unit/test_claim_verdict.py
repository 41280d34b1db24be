"""The built-in pre-check's verdict over the runs a claim reads under the job's lock."""

from datetime import UTC, datetime
from typing import NamedTuple

import pytest

from app.core.claims import ClaimRequest, Skip, decide, pause_reason, settled_reason

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EARLIER = datetime(2026, 1, 1, 11, 0, tzinfo=UTC)


class Run(NamedTuple):
    """A run as the claim's state query returns it (status is plain text, as stored)."""

    id: int
    status: str
    scheduled_for: datetime = NOON
    attempt: int = 1
    worker_id: str = "host-a:101"
    retry_due: bool | None = None  # NULL when the run has no retry_at


def request(trigger: str = "schedule", **options) -> ClaimRequest:
    return ClaimRequest(
        job_name="sync-invoices",
        scheduled_for=NOON,
        trigger=trigger,
        worker_id="host-b:202",
        stale_after_s=60.0,
        **options,
    )


def test_an_instant_without_runs_is_claimed_as_attempt_one():
    assert decide([], request()) == (1, None)


def test_runs_of_other_instants_that_ended_do_not_matter():
    runs = [Run(7, "SUCCESS", EARLIER), Run(8, "FAILURE", EARLIER, retry_due=True)]
    assert decide(runs, request()) == (1, None)


def test_a_live_run_of_the_instant_is_a_handled_skip_never_recorded():
    runs = [Run(9, "RUNNING", worker_id="host-a:101")]
    for trigger in ("schedule", "manual"):
        assert decide(runs, request(trigger)) == Skip(
            "already running as run 9 on host-a:101", recorded=False, kind="handled"
        )


def test_a_live_run_of_the_instant_wins_over_a_failure_due_for_retry():
    runs = [Run(3, "FAILURE", retry_due=True), Run(4, "RUNNING", attempt=2, worker_id="w:4")]
    assert decide(runs, request(retry_run_id=3)) == Skip("already running as run 4 on w:4")


@pytest.mark.parametrize("status", ["SUCCESS", "SKIPPED", "MISSED"])
def test_an_outcome_settles_the_instant(status: str):
    assert decide([Run(5, status)], request()) == Skip(
        f"this instant already has run 5 ({status})", recorded=False, kind="handled"
    )


@pytest.mark.parametrize("retry_due", [None, False])
def test_a_failure_whose_retry_is_not_due_settles_the_instant(retry_due: bool | None):
    assert decide([Run(5, "FAILURE", retry_due=retry_due)], request()) == Skip(
        "this instant already has run 5 (FAILURE)"
    )


def test_a_failure_due_for_retry_is_claimed_as_the_next_attempt():
    assert decide([Run(5, "FAILURE", attempt=2, retry_due=True)], request()) == (3, 5)


def test_the_latest_attempt_decides_whatever_order_the_runs_come_in():
    runs = [
        Run(12, "FAILURE", attempt=3, retry_due=True),
        Run(10, "FAILURE", attempt=1, retry_due=True),
        Run(11, "FAILURE", attempt=2, retry_due=False),
    ]
    assert decide(runs, request()) == (4, 12)
    runs = [Run(12, "SUCCESS", attempt=2), Run(10, "FAILURE", attempt=1, retry_due=True)]
    assert decide(runs, request()) == Skip("this instant already has run 12 (SUCCESS)")


def test_retry_run_id_retries_the_latest_failure_even_when_no_retry_is_due():
    runs = [Run(10, "FAILURE", attempt=1), Run(11, "FAILURE", attempt=2)]
    assert decide(runs, request("manual", retry_run_id=11)) == (3, 11)


def test_retry_run_id_of_an_earlier_attempt_settles_the_instant():
    runs = [Run(10, "FAILURE", attempt=1), Run(11, "FAILURE", attempt=2)]
    assert decide(runs, request("manual", retry_run_id=10)) == Skip(
        "this instant already has run 11 (FAILURE)"
    )


def test_retry_run_id_of_a_run_that_did_not_fail_settles_the_instant():
    assert decide([Run(10, "SUCCESS")], request("manual", retry_run_id=10)) == Skip(
        "this instant already has run 10 (SUCCESS)"
    )


@pytest.mark.parametrize("retry", [{"retry_due": True}, {"retry_run_id": 5}])
def test_a_retry_waits_while_another_run_of_the_job_is_live(retry: dict):
    runs = [
        Run(5, "FAILURE", retry_due=retry.get("retry_due")),
        Run(6, "RUNNING", EARLIER, worker_id="w:6"),
    ]
    claim = request(retry_run_id=retry.get("retry_run_id"))
    assert decide(runs, claim) == Skip(
        "retry waits: run 6 is still running", recorded=False, kind="running"
    )


def test_a_previous_run_still_running_is_recorded_only_for_a_scheduled_claim():
    runs = [Run(6, "RUNNING", EARLIER, worker_id="host-a:101")]
    reason = "previous run 6 (for 2026-01-01T11:00:00+00:00) is still running on host-a:101"
    scheduled = decide(runs, request("schedule"))
    manual = decide(runs, request("manual"))
    assert isinstance(scheduled, Skip)
    assert isinstance(manual, Skip)
    assert (scheduled.reason, scheduled.recorded) == (reason, True)
    assert (manual.reason, manual.recorded) == (reason, False)


def test_a_previous_run_still_running_counts_as_running_in_metrics():
    """Skip.kind documents `running` for "a previous run is still going".

    The metric `cronlock_claims_skipped_total{reason}` is labelled with it, and the
    runbook calls `handled` normal noise with several workers: an overlap must not
    hide there.
    """
    skip = decide([Run(6, "RUNNING", EARLIER)], request("schedule"))
    assert isinstance(skip, Skip)
    assert skip.kind == "running"


def test_pause_reason_prefers_the_jobs_own_pause():
    assert pause_reason("deploying", "incident") == "paused: deploying"
    assert pause_reason(None, "incident") == "paused (all jobs): incident"
    assert pause_reason(None, None) is None


def test_pause_reason_keeps_an_empty_reason_as_a_pause():
    assert pause_reason("", None) == "paused: "
    assert pause_reason(None, "") == "paused (all jobs): "


def test_settled_reason_says_who_runs_it_or_how_it_ended():
    assert settled_reason("RUNNING", 4, "w:1") == "already running as run 4 on w:1"
    assert settled_reason("MISSED", 4, "w:1") == "this instant already has run 4 (MISSED)"
