"""The claim, its built-in pre-check, takeover of stale runs, and fencing of late finishes."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from app.core.claims import Claim, ClaimRequest, PreCheckFailed, Skip, Wait
from app.core.outcomes import Outcome, RunStatus
from app.errors import DatabaseUnavailable
from app.store.claiming import claim_next, ensure_jobs
from app.store.control import pause_all, pauses
from app.store.database import Database
from app.store.runs import finish_run
from tests.integration.helpers import INSTANT, age_run, claim, rows, wait_for_lock_wait


def test_claim_inserts_a_running_row(database: Database):
    result = claim(database, worker_id="host:42")
    assert isinstance(result, Claim)
    [row] = rows(database)
    assert (row.id, row.status, row.scheduled_for, row.worker_id) == (
        result.run_id,
        "RUNNING",
        INSTANT,
        "host:42",
    )


def test_finish_records_success_with_result(database: Database):
    result = claim(database)
    assert isinstance(result, Claim)
    assert finish_run(
        database, result.run_id, Outcome(RunStatus.SUCCESS, result={"processed": 10})
    ).landed
    [row] = rows(database)
    assert row.status == "SUCCESS"
    assert row.result == {"processed": 10}
    assert row.completed_at is not None


def test_fresh_running_run_blocks_another_claim(database: Database):
    first = claim(database)
    assert isinstance(first, Claim)
    second = claim(database, scheduled_for=INSTANT + timedelta(minutes=1))
    assert isinstance(second, Skip)
    assert f"previous run {first.run_id}" in second.reason
    assert second.recorded
    same = claim(database)
    assert isinstance(same, Skip)
    assert "already running" in same.reason
    assert not same.recorded
    running, skipped = rows(database)
    assert running.status == "RUNNING"
    assert (skipped.status, skipped.scheduled_for) == ("SKIPPED", INSTANT + timedelta(minutes=1))
    assert skipped.error_message == second.reason


def test_a_handled_instant_is_not_run_again(database: Database):
    first = claim(database)
    assert isinstance(first, Claim)
    finish_run(database, first.run_id, Outcome(RunStatus.SUCCESS))
    again = claim(database)
    assert isinstance(again, Skip)
    assert f"already has run {first.run_id} (SUCCESS)" in again.reason
    following = claim(database, scheduled_for=INSTANT + timedelta(minutes=1))
    assert isinstance(following, Claim)


def test_stale_running_run_is_marked_failure_and_taken_over(database: Database):
    stale = claim(database, worker_id="dead:1")
    assert isinstance(stale, Claim)
    age_run(database, stale.run_id, 3601)
    fresh = claim(database, scheduled_for=INSTANT + timedelta(minutes=1), worker_id="live:2")
    assert isinstance(fresh, Claim)
    old, new = rows(database)
    assert old.status == "FAILURE"
    assert old.error_message.startswith("abandoned: no heartbeat since")
    assert "dead:1" in old.error_message
    assert "live:2" in old.error_message
    assert (new.status, new.worker_id) == ("RUNNING", "live:2")


def test_staleness_uses_the_threshold(database: Database):
    run = claim(database)
    assert isinstance(run, Claim)
    age_run(database, run.run_id, 30)
    assert isinstance(
        claim(database, scheduled_for=INSTANT + timedelta(minutes=1), stale_after_s=60), Skip
    )
    assert isinstance(
        claim(database, scheduled_for=INSTANT + timedelta(minutes=2), stale_after_s=20), Claim
    )


def test_a_renewal_that_commits_while_a_takeover_waits_keeps_the_run(database: Database):
    owned = claim(database, worker_id="owner:1")
    assert isinstance(owned, Claim)
    age_run(database, owned.run_id, 3601)
    found: list[Any] = []
    with database.engine.connect() as owner:
        # The owner's renewal, in flight: the row is locked, the new beat not yet visible.
        owner.execute(
            text("UPDATE job_execution SET heartbeat_at = now() WHERE id = :id"),
            {"id": owned.run_id},
        )
        taker = threading.Thread(
            target=lambda: found.append(
                claim(database, scheduled_for=INSTANT + timedelta(minutes=1), worker_id="taker:2")
            )
        )
        taker.start()
        wait_for_lock_wait(database, "UPDATE job_execution")  # it read the beat as stale
        owner.commit()
    taker.join(timeout=30)
    [result] = found
    assert isinstance(result, Skip)
    assert result.reason.startswith(f"previous run {owned.run_id} ")
    run, skipped = rows(database)
    assert (run.id, run.status, run.worker_id) == (owned.run_id, "RUNNING", "owner:1")
    assert (skipped.status, skipped.worker_id) == ("SKIPPED", "taker:2")


def test_late_finish_after_takeover_is_fenced(database: Database):
    slow = claim(database)
    assert isinstance(slow, Claim)
    age_run(database, slow.run_id, 7200)
    assert isinstance(claim(database, scheduled_for=INSTANT + timedelta(minutes=1)), Claim)
    assert finish_run(database, slow.run_id, Outcome(RunStatus.SUCCESS)).landed is False
    assert rows(database)[0].status == "FAILURE"


def test_pre_check_reason_is_recorded_as_skipped(database: Database):
    seen = []

    def pre_check(session):
        seen.append(session.execute(text("SELECT count(*) FROM job_execution")).scalar())
        return "already done for this period"

    result = claim(database, pre_check=pre_check)
    assert result == Skip("already done for this period", recorded=True, kind="pre_check")
    assert seen == [0]
    [row] = rows(database)
    assert (row.status, row.error_message) == ("SKIPPED", "already done for this period")
    assert row.completed_at is not None
    assert claim(database, pre_check=pre_check) == Skip(
        f"this instant already has run {row.id} (SKIPPED)"
    )


def test_pre_check_that_raises_records_a_failure(database: Database):
    def pre_check(session):
        session.execute(text("SELECT * FROM no_such_table"))

    result = claim(database, pre_check=pre_check)
    assert isinstance(result, PreCheckFailed)
    [row] = rows(database)
    assert row.status == "FAILURE"
    assert "pre-check raised ProgrammingError" in row.error_message


def test_skip_locked_returns_none_while_another_claim_holds_the_row(database: Database):
    ensure_jobs(database, ["a"])
    with database.transaction() as session:
        session.execute(text("SELECT * FROM job WHERE name = 'a' FOR UPDATE"))
        assert claim(database) is None
    assert isinstance(claim(database), Claim)


def test_run_after_waits_for_upstream_and_skips_on_its_failure(database: Database):
    assert isinstance(claim(database, job_name="down", run_after=["up"]), Wait)
    up = claim(database, job_name="up")
    assert isinstance(up, Claim)
    assert isinstance(claim(database, job_name="down", run_after=["up"]), Wait)
    finish_run(database, up.run_id, Outcome(RunStatus.FAILURE, error="provider down"))
    skipped = claim(database, job_name="down", run_after=["up"])
    assert isinstance(skipped, Skip)
    assert "upstream up ended FAILURE: provider down" in skipped.reason

    later = INSTANT + timedelta(minutes=1)
    up2 = claim(database, job_name="up", scheduled_for=later)
    assert isinstance(up2, Claim)
    finish_run(database, up2.run_id, Outcome(RunStatus.SUCCESS))
    assert isinstance(
        claim(database, job_name="down", run_after=["up"], scheduled_for=later), Claim
    )


def test_invariants_refuse_a_second_running_run_and_a_second_success(database: Database):
    insert = (
        "INSERT INTO job_execution (job_name, status, scheduled_for, trigger, worker_id, "
        "completed_at) VALUES ('a', :status, :at, 'schedule', 'x', "
        "CASE WHEN :status = 'RUNNING' THEN NULL ELSE now() END)"
    )
    ensure_jobs(database, ["a"])
    with database.transaction() as session:
        session.execute(text(insert), {"status": "RUNNING", "at": INSTANT})
    with pytest.raises(IntegrityError), database.engine.begin() as conn:
        conn.execute(text(insert), {"status": "RUNNING", "at": INSTANT + timedelta(minutes=1)})
    with database.transaction() as session:
        session.execute(text(insert), {"status": "SUCCESS", "at": INSTANT + timedelta(minutes=2)})
    with pytest.raises(IntegrityError), database.engine.begin() as conn:
        conn.execute(text(insert), {"status": "SUCCESS", "at": INSTANT + timedelta(minutes=2)})


def test_a_second_success_for_an_instant_is_recorded_as_failure(database: Database):
    run = claim(database)
    assert isinstance(run, Claim)
    with database.transaction() as session:  # a writer that bypassed the lock
        session.execute(
            text(
                "INSERT INTO job_execution (job_name, status, scheduled_for, trigger, attempt, "
                "worker_id, completed_at) VALUES ('a', 'SUCCESS', :at, 'manual', 2, 'rogue', now())"
            ),
            {"at": INSTANT},
        )
    assert finish_run(database, run.run_id, Outcome(RunStatus.SUCCESS)).landed is False
    mine = rows(database, f"id = {run.run_id}")[0]
    assert (mine.status, mine.error_message) == (
        "FAILURE",
        "duplicate: this instant already has a SUCCESS run",
    )


def test_a_run_without_result_stores_sql_null(database: Database):
    run = claim(database)
    assert isinstance(run, Claim)
    finish_run(database, run.run_id, Outcome(RunStatus.SUCCESS, result=None))
    with database.transaction() as session:
        assert session.execute(text("SELECT result IS NULL FROM job_execution")).scalar() is True


def test_a_connection_lost_mid_claim_is_reported_and_replaced(database: Database, db_url: str):
    first = claim(database)  # the pool now holds one idle connection
    assert isinstance(first, Claim)
    finish_run(database, first.run_id, Outcome(RunStatus.SUCCESS))
    libpq_url = make_url(db_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(libpq_url, autocommit=True) as admin:
        # The timeout makes the call wait until the backend has gone.
        ended = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000))"
            " FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchone()
    assert ended == (1,)
    with pytest.raises(DatabaseUnavailable, match="cannot reach the database"):
        claim(database, scheduled_for=INSTANT + timedelta(minutes=1))
    assert isinstance(claim(database, scheduled_for=INSTANT + timedelta(minutes=2)), Claim)


def _request(job_name: str, **options: Any) -> ClaimRequest:
    defaults: dict[str, Any] = {
        "scheduled_for": INSTANT,
        "trigger": "schedule",
        "worker_id": "test:1",
        "stale_after_s": 3600,
    }
    return ClaimRequest(job_name=job_name, **{**defaults, **options})


def test_claim_next_steps_over_settled_and_held_instants(database: Database):
    ensure_jobs(database, ["done", "held", "running", "free", "later"])
    done = claim(database, "done")
    assert isinstance(done, Claim)
    finish_run(database, done.run_id, Outcome(RunStatus.SUCCESS))
    running = claim(database, "running", worker_id="test:2")
    assert isinstance(running, Claim)
    names = ["done", "held", "running", "free", "later"]
    with database.connection() as other:  # another replica in the middle of its claim
        other.execute(text("SELECT 1 FROM job WHERE name = 'held' FOR UPDATE"))
        found = claim_next(database, [_request(name) for name in names])
    assert found.settled == {
        0: Skip(f"this instant already has run {done.run_id} (SUCCESS)"),
        2: Skip(f"already running as run {running.run_id} on test:2"),
    }
    assert (found.held, found.position) == ([1], 3)
    assert isinstance(found.result, Claim)
    assert (found.result.job_name, found.result.scheduled_for) == ("free", INSTANT)
    nothing = claim_next(database, [_request("done"), _request("running")])
    assert (sorted(nothing.settled), nothing.position, nothing.result) == ([0, 1], None, None)


def test_claim_next_takes_over_an_instant_whose_run_stopped_beating(database: Database):
    stale = claim(database, "a", worker_id="test:dead")
    assert isinstance(stale, Claim)
    age_run(database, stale.run_id, 120)
    found = claim_next(database, [_request("a", stale_after_s=60, retries=1)])
    assert (found.settled, found.position) == ({}, 0)
    assert isinstance(found.result, Claim)
    assert found.result.attempt == 2
    abandoned, retried = rows(database)
    assert abandoned.status == "FAILURE"
    assert abandoned.error_message.startswith("abandoned: no heartbeat")
    assert (retried.id, retried.status) == (found.result.run_id, "RUNNING")


def test_claim_next_reads_the_pause_with_the_lock(database: Database):
    ensure_jobs(database, ["a"])
    with database.transaction() as session:
        session.execute(text("UPDATE job SET paused_reason = 'maintenance' WHERE name = 'a'"))
    found = claim_next(database, [_request("a")])
    assert found.position == 0
    assert found.result == Skip("paused: maintenance", recorded=True, kind="paused")


# -- pause --all against claims in flight ---------------------------------------------------------


def test_a_claim_that_waited_for_the_lock_reads_a_pause_all_that_landed_meanwhile(
    database: Database,
):
    ensure_jobs(database, ["a"])
    found: list[Any] = []
    with database.engine.connect() as holder:
        holder.execute(text("SELECT name FROM job WHERE name = 'a' FOR UPDATE"))
        waiter = threading.Thread(target=lambda: found.append(claim(database, wait_for_lock=True)))
        waiter.start()
        wait_for_lock_wait(database, "SELECT job.name")
        with database.transaction() as session:
            session.execute(
                text("INSERT INTO global_pause (paused_reason, paused_by) VALUES ('freeze', 't')")
            )
        holder.rollback()
    waiter.join(timeout=30)
    [result] = found
    assert isinstance(result, Skip)
    assert result.reason == "paused (all jobs): freeze"


def test_pause_all_returns_only_after_the_claims_in_progress(database: Database):
    ensure_jobs(database, ["a", "b"])
    with database.engine.connect() as claiming:
        claiming.execute(text("SELECT name FROM job WHERE name = 'b' FOR UPDATE"))
        pausing = threading.Thread(
            target=lambda: pause_all(database, reason="freeze", paused_by="t")
        )
        pausing.start()
        wait_for_lock_wait(database, "SELECT job.name")
        assert pausing.is_alive()
        assert pauses(database)[0] is None  # not committed while it waits
        claiming.commit()
    pausing.join(timeout=30)
    assert not pausing.is_alive()
    everything, _ = pauses(database)
    assert everything is not None
    assert everything.reason == "freeze"
    assert claim(database, "b").reason == "paused (all jobs): freeze"
