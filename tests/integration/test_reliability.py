"""Leases, fencing, timeouts, retries, catch-up, transactional jobs, outages: in one process.

The fault-injection suite (tests/integration/test_faults.py) does the same with
real processes being killed and a real server being stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from app.config import Settings
from app.core.claims import Claim
from app.core.planning import MAX_MISSED_SCAN, latest_instants
from app.errors import DatabaseUnavailable
from app.job import Job, RunContext
from app.runtime.execution import execute
from app.runtime.interrupts import Alarm
from app.runtime.lease import Heartbeat, Lease
from app.runtime.worker import utc_now
from app.store.database import Database
from app.store.facade import Store
from tests.integration.helpers import (
    INSTANT,
    age_run,
    claim,
    rows,
    wait_for_lock_wait,
    wait_until,
    worker_for,
    yearly_failure_due_for_retry,
)

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FAST = {"STALE_JOB_THRESHOLD_SECONDS": "1", "HEARTBEAT_INTERVAL_SECONDS": "0.1"}


def refuse_connections(admin_url: str, db_url: str, refused: bool) -> None:
    """Make the test database refuse (or accept again) new connections, dropping current ones."""
    name = make_url(db_url).database
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(not refused).lower()}')
        if refused:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


# -- leases and fencing ------------------------------------------------------------------


def test_heartbeats_keep_a_long_run_from_being_taken_over(database: Database):
    run = claim(database)
    assert isinstance(run, Claim)
    # The widest interval the settings allow (a third of the threshold): the run
    # still trusts its claim throughout, as the body's should_stop() would ask.
    heartbeat = Heartbeat(Store(database), interval_s=1 / 3, stale_after_s=1)
    lease = heartbeat.lease(run.run_id, "a")
    with heartbeat.track(lease):
        deadline = time.monotonic() + 2.5  # longer than the stale threshold
        while time.monotonic() < deadline:
            rival = claim(database, scheduled_for=INSTANT + timedelta(minutes=5), stale_after_s=1)
            assert "still running" in rival.reason or "already has run" in rival.reason
            assert not lease.lost
            time.sleep(0.1)
    heartbeat.close()
    assert not lease.cancelled.is_set()
    assert rows(database, f"id = {run.run_id}")[0].status == "RUNNING"


def test_a_lease_that_was_taken_over_cancels_the_run(database: Database):
    run = claim(database)
    assert isinstance(run, Claim)
    heartbeat = Heartbeat(Store(database), interval_s=0.1, stale_after_s=60)
    with heartbeat.track(heartbeat.lease(run.run_id, "a")) as lease:
        age_run(database, run.run_id, 3600)
        assert isinstance(claim(database, scheduled_for=INSTANT + timedelta(minutes=1)), Claim)
        assert lease.cancelled.wait(10)
    heartbeat.close()
    assert lease.lost_reason == "another worker took the run over"


def test_a_renewal_that_lands_after_the_runs_own_finish_is_no_takeover(database: Database):
    run = claim(database)
    assert isinstance(run, Claim)
    # One renewal, sent at once; it may wait up to one interval for the row.
    heartbeat = Heartbeat(Store(database), interval_s=5, stale_after_s=60)
    lease = heartbeat.lease(run.run_id, "a")
    lease.next_beat_at = time.monotonic()
    with database.engine.connect() as finishing:
        # The run's finish holds the row; the renewal waits behind it.
        finishing.execute(
            text(
                "UPDATE job_execution SET status = 'SUCCESS', completed_at = now() WHERE id = :id"
            ),
            {"id": run.run_id},
        )
        with heartbeat.track(lease):
            wait_for_lock_wait(database, "UPDATE job_execution")
        finishing.commit()  # the renewal then finds the run ended, after its body did
    heartbeat.close()  # waits for that renewal
    assert lease.lost_reason is None
    assert not lease.cancelled.is_set()


def test_the_heartbeat_says_alive_between_renewals_and_while_they_fail(database: Database):
    """A long interval, then an outage: neither is a wedged worker to /healthz or systemd."""
    run = claim(database)
    assert isinstance(run, Claim)
    beats: list[float] = []
    unreachable = Database("postgresql+psycopg://cronlock@127.0.0.1:1/cronlock")
    heartbeat = Heartbeat(
        unreachable,
        interval_s=20,
        stale_after_s=60,
        on_alive=lambda: beats.append(time.monotonic()),
        alive_every_s=0.1,
    )
    lease = heartbeat.lease(run.run_id, "a")
    lease.next_beat_at = time.monotonic()  # renew (and fail) at once, then retry each second
    with heartbeat.track(lease):
        wait_until(lambda: len(beats) >= 5, timeout_s=10)
    heartbeat.close()
    unreachable.dispose()
    assert not lease.lost


def test_a_failing_liveness_report_does_not_end_the_heartbeat(database: Database):
    run = claim(database)
    assert isinstance(run, Claim)
    reports: list[float] = []

    def broken_report() -> None:
        reports.append(time.monotonic())
        raise RuntimeError("metrics exporter broke")

    heartbeat = Heartbeat(
        Store(database),
        interval_s=0.2,
        stale_after_s=60,
        on_alive=broken_report,
        alive_every_s=0.05,
    )
    with heartbeat.track(heartbeat.lease(run.run_id, "a")) as lease:
        wait_until(lambda: len(reports) >= 3, timeout_s=10)  # the thread lived on
    heartbeat.close()
    assert not lease.lost


def test_a_lease_that_cannot_be_renewed_fences_itself(db_url, pg_admin_url, database: Database):
    run = claim(database)
    assert isinstance(run, Claim)
    heartbeat = Heartbeat(Store(database), interval_s=0.1, stale_after_s=0.5)
    try:
        with heartbeat.track(heartbeat.lease(run.run_id, "a")) as lease:
            refuse_connections(pg_admin_url, db_url, refused=True)
            assert lease.cancelled.wait(20)
    finally:
        refuse_connections(pg_admin_url, db_url, refused=False)
        heartbeat.close()
    assert lease.lost_reason.startswith("no heartbeat landed for")


def _beats(database: Database, run_id: int) -> datetime:
    with database.transaction() as session:
        return session.execute(
            text("SELECT heartbeat_at FROM job_execution WHERE id = :id"), {"id": run_id}
        ).scalar_one()


def _next_run_beats(database: Database, heartbeat: Heartbeat) -> Lease:
    """Claim job b and track it until its heartbeat has moved; return its lease."""
    later = claim(database, "b")
    assert isinstance(later, Claim)
    claimed_beat = _beats(database, later.run_id)
    with heartbeat.track(heartbeat.lease(later.run_id, "b")) as lease:
        wait_until(lambda: _beats(database, later.run_id) > claimed_beat)
    return lease


def test_a_renewal_stuck_in_the_database_fences_its_run_and_spares_the_next(
    database: Database,
):
    # The row lock held here keeps the first run's renewals waiting: its claim is
    # given up before any other worker may take it over, and while the lock is
    # still held, the worker's next run gets its heartbeats all the same.
    stuck = claim(database)
    assert isinstance(stuck, Claim)
    heartbeat = Heartbeat(Store(database), interval_s=0.1, stale_after_s=1)
    lease = heartbeat.lease(stuck.run_id, "a")
    assert lease.fence_after_s == pytest.approx(0.9)
    with database.engine.connect() as blocker:
        blocker.execute(
            text("SELECT 1 FROM job_execution WHERE id = :id FOR UPDATE"), {"id": stuck.run_id}
        )
        with heartbeat.track(lease):
            wait_until(lambda: lease.lost)
        next_lease = _next_run_beats(database, heartbeat)
        blocker.rollback()
    heartbeat.close()
    assert lease.cancelled.is_set()
    assert lease.lost_reason.startswith("no heartbeat landed for")
    assert not next_lease.lost


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("a bug"),
        pytest.param(
            SystemExit(3),
            marks=pytest.mark.filterwarnings(
                "ignore::pytest.PytestUnhandledThreadExceptionWarning"
            ),
        ),
    ],
)
def test_no_error_leaves_later_runs_without_a_heartbeat(database: Database, monkeypatch, error):
    # A RuntimeError is a failed renewal that the thread survives; an exit ends the
    # thread, and the next run's track() starts another.
    failures = [error]

    class RenewFailingOnce(Store):
        def renew(self, run_id: int, *, timeout_s: float) -> bool:
            if failures:
                raise failures.pop()
            return super().renew(run_id, timeout_s=timeout_s)

    heartbeat = Heartbeat(RenewFailingOnce(database), interval_s=0.05, stale_after_s=3600)
    first = claim(database)
    assert isinstance(first, Claim)
    with heartbeat.track(heartbeat.lease(first.run_id, "a")):
        wait_until(lambda: not failures)
    if isinstance(error, SystemExit):  # the thread is on its way out: let it finish
        wait_until(lambda: not heartbeat._thread.is_alive())
    lease = _next_run_beats(database, heartbeat)
    heartbeat.close()
    assert not lease.lost


def test_a_run_whose_lease_is_lost_is_never_recorded_success(database: Database):
    """The body sees should_stop() once taken over; its SUCCESS is replaced and fenced."""
    settings = Settings.from_env(FAST)
    seen_stop = []

    def body(ctx: RunContext):
        deadline = time.monotonic() + 20
        while not ctx.should_stop() and time.monotonic() < deadline:
            time.sleep(0.02)
        seen_stop.append(ctx.should_stop())
        return {"finished": True}

    job = Job(name="a", body=body, schedule="* * * * *")
    run = claim(database)
    assert isinstance(run, Claim)

    def take_over():
        wait_until(lambda: rows(database, f"id = {run.run_id}")[0].status == "RUNNING")
        age_run(database, run.run_id, 3600)
        claim(database, scheduled_for=INSTANT + timedelta(minutes=1), worker_id="rival:2")

    rival = threading.Thread(target=take_over)
    rival.start()
    outcome = execute(Store(database), job, run, settings, alarm=Alarm())
    rival.join()
    assert seen_stop == [True]
    assert (outcome.status, outcome.recorded) == ("FAILURE", False)
    assert outcome.error == "lease lost: another worker took the run over"
    first = rows(database, f"id = {run.run_id}")[0]
    assert first.status == "FAILURE"
    assert first.error_message.startswith("abandoned:")


# -- timeouts ------------------------------------------------------------------------------


def test_a_job_over_its_timeout_is_interrupted_and_the_tick_goes_on(database: Database):
    jobs = [
        Job(name="stuck", body=lambda ctx: time.sleep(30), schedule="* * * * *", timeout_s=0.3),
        Job(name="next", body=lambda ctx: {"ran": True}, schedule="* * * * *"),
    ]
    clock = lambda: NOON  # noqa: E731
    report = worker_for(database, jobs, clock=clock, start_at=NOON - timedelta(seconds=1)).tick(
        NOON
    )
    assert [o.status for o in report.outcomes] == ["FAILURE", "SUCCESS"]
    stuck, following = rows(database)
    assert (stuck.status, stuck.error_message) == ("FAILURE", "timed out after 0.3s")
    assert following.status == "SUCCESS"


def test_a_timed_job_gets_a_statement_timeout(database: Database):
    seen = []

    def body(ctx: RunContext):
        with ctx.session() as session, session.begin():
            seen.append(session.execute(text("SHOW statement_timeout")).scalar())

    jobs = [Job(name="capped", body=body, schedule="* * * * *", timeout_s=2.5)]
    worker_for(database, jobs, clock=lambda: NOON, start_at=NOON - timedelta(seconds=1)).tick(NOON)
    assert seen == ["2500ms"]


# -- retries ---------------------------------------------------------------------------------


def test_a_failed_instant_is_retried_with_growing_backoff(database: Database):
    attempts = []

    def flaky(ctx: RunContext):
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt} failed")
        return {"attempt": ctx.attempt}

    jobs = [Job(name="flaky", body=flaky, schedule="0 0 * * *", retries=3, retry_backoff_s=0.2)]
    worker = worker_for(database, jobs, registered_before_latest=True)
    worker.run_once()
    for expected in ([1, 2], [1, 2, 3]):
        # The worker times a retry on its own clock, a little after the database's.
        wait_until(lambda e=expected: worker.tick(utc_now()) is not None and attempts == e)
    assert attempts == [1, 2, 3]
    first, second, third = rows(database)
    assert [r.status for r in (first, second, third)] == ["FAILURE", "FAILURE", "SUCCESS"]
    assert len({r.scheduled_for for r in (first, second, third)}) == 1
    gap_1 = (second.started_at - first.completed_at).total_seconds()
    gap_2 = (third.started_at - second.completed_at).total_seconds()
    assert gap_1 >= 0.2 * 0.5
    assert gap_2 >= 0.4 * 0.5
    with database.transaction() as session:
        assert (
            session.execute(
                text("SELECT count(*) FROM job_execution WHERE retry_at IS NOT NULL")
            ).scalar()
            == 0
        )


def test_a_retry_whose_next_instant_came_first_is_given_up(database: Database, caplog):
    moment = [utc_now()]
    worker = yearly_failure_due_for_retry(database, moment)
    [first] = rows(database)
    # Every worker was away until the job's next instant: the retry cannot run any more.
    moment[0] = first.scheduled_for.replace(year=first.scheduled_for.year + 1) + timedelta(
        seconds=1
    )
    worker.tick(moment[0])
    with database.transaction() as session:
        left = session.execute(
            text("SELECT status, attempt, retry_at FROM job_execution WHERE scheduled_for = :at"),
            {"at": first.scheduled_for},
        ).all()
    assert [tuple(row) for row in left] == [("FAILURE", 1, None)]
    expired = [r for r in caplog.records if getattr(r, "event", None) == "retry_expired"]
    assert [r.job for r in expired] == ["yearly"]


def test_a_retry_never_runs_past_the_next_instant(database: Database):
    def failing(ctx):
        raise RuntimeError("down")

    jobs = [
        Job(name="daily", body=failing, schedule="0 0 * * *", retries=5, retry_backoff_s=2 * 86400)
    ]
    report = worker_for(database, jobs, registered_before_latest=True).run_once()
    [outcome] = report.outcomes
    assert outcome.retry_in_s is None
    assert rows(database)[0].status == "FAILURE"


def test_a_retry_is_timed_on_the_workers_clock(database: Database):
    """A worker whose clock runs ahead would see the database's retry time as past."""

    def failing(ctx):
        raise RuntimeError("down")

    def ahead() -> datetime:
        return utc_now() + timedelta(hours=1)

    jobs = [Job(name="yearly", body=failing, schedule="0 0 1 1 *", retries=1, retry_backoff_s=30)]
    failed_here = worker_for(database, jobs, clock=ahead, registered_before_latest=True)
    [outcome] = failed_here.run_once().outcomes
    assert outcome.retry_in_s is not None
    restarted = worker_for(database, jobs, clock=ahead)
    restarted.tick(ahead())  # reads the pending retry from the table
    for worker in (failed_here, restarted):
        wait = worker.retries.next_retry_at - ahead()
        assert timedelta(0) < wait <= timedelta(seconds=60), wait


def test_an_abandoned_run_with_retries_left_is_run_again_for_its_instant(database: Database):
    dead = claim(database, worker_id="dead:1")
    assert isinstance(dead, Claim)
    age_run(database, dead.run_id, 3600)
    again = claim(database, worker_id="live:2", retries=1)
    assert isinstance(again, Claim)
    assert again.attempt == 2
    first, second = rows(database)
    assert (first.status, second.status, second.scheduled_for) == ("FAILURE", "RUNNING", INSTANT)


# -- every instant gets an outcome ---------------------------------------------------------------


def _history(database, job: str, *instants: datetime) -> None:
    for instant in instants:
        run = claim(database, job_name=job, scheduled_for=instant)
        from app.core.outcomes import Outcome, RunStatus
        from app.store.runs import finish_run

        finish_run(database, run.run_id, Outcome(RunStatus.SUCCESS))


def test_after_an_outage_the_latest_instant_is_caught_up_and_older_ones_missed(database: Database):
    _history(database, "minutely", NOON)
    ran = []
    jobs = [
        Job(name="minutely", body=lambda ctx: ran.append(ctx.scheduled_for), schedule="* * * * *")
    ]
    back_at = NOON + timedelta(minutes=5, seconds=10)
    worker = worker_for(database, jobs, clock=lambda: back_at, start_at=back_at)
    report = worker.tick(back_at)
    assert ran == [NOON + timedelta(minutes=5)]
    assert report.missed == 4
    statuses = [(r.scheduled_for - NOON, r.status) for r in rows(database)]
    assert statuses[0] == (timedelta(0), "SUCCESS")
    assert sorted(statuses[1:]) == [(timedelta(minutes=m), "MISSED") for m in (1, 2, 3, 4)] + [
        (timedelta(minutes=5), "SUCCESS")
    ]
    # A second replica doing the same work records nothing twice.
    twin = worker_for(database, jobs, clock=lambda: back_at, start_at=back_at)
    twin.cursors["minutely"] = NOON
    assert twin.tick(back_at).missed == 0
    assert len(rows(database)) == 6


def test_missed_instants_whose_record_failed_are_recorded_by_the_next_tick(
    database: Database, monkeypatch
):
    _history(database, "strict", NOON)
    jobs = [Job(name="strict", body=lambda ctx: None, schedule="* * * * *", misfire_grace_s=0)]
    back_at = NOON + timedelta(minutes=3, seconds=30)
    outage = [DatabaseUnavailable("cannot reach the database")]

    class RecordOnceUnavailable(Store):
        def record_missed(self, missed):
            if outage:
                raise outage.pop()
            return super().record_missed(missed)

    store = RecordOnceUnavailable(database)
    worker = worker_for(store, jobs, clock=lambda: back_at, start_at=back_at)
    with pytest.raises(DatabaseUnavailable):
        worker.tick(back_at)
    worker.tick(back_at + timedelta(seconds=1))
    missed = [r.scheduled_for - NOON for r in rows(database) if r.status == "MISSED"]
    assert sorted(missed) == [timedelta(minutes=m) for m in (1, 2, 3)]


def test_a_gap_longer_than_the_scan_says_what_it_leaves_unrecorded(database: Database, caplog):
    _history(database, "secondly", NOON)
    jobs = [Job(name="secondly", body=lambda ctx: None, schedule="* * * * * *")]
    back_at = NOON + timedelta(seconds=MAX_MISSED_SCAN + 500)
    worker = worker_for(database, jobs, clock=lambda: back_at, start_at=back_at)
    worker.tick(back_at)
    [line] = [r for r in caplog.records if getattr(r, "event", "") == "instants_not_recorded"]
    oldest_scanned = back_at - timedelta(seconds=MAX_MISSED_SCAN - 1)
    assert (line.job, line.__dict__["from"], line.until) == (
        "secondly",
        (NOON + timedelta(seconds=1)).isoformat(),
        oldest_scanned.isoformat(),
    )
    missed = [r.scheduled_for for r in rows(database) if r.status == "MISSED"]
    assert min(missed) == oldest_scanned


def test_an_instant_later_than_the_misfire_grace_is_missed_not_run(database: Database):
    _history(database, "strict", NOON)
    ran = []
    jobs = [
        Job(name="strict", body=lambda ctx: ran.append(1), schedule="* * * * *", misfire_grace_s=5)
    ]
    back_at = NOON + timedelta(minutes=2, seconds=30)
    worker_for(database, jobs, clock=lambda: back_at, start_at=back_at).tick(back_at)
    assert ran == []
    missed = [r for r in rows(database) if r.status == "MISSED"]
    assert [r.scheduled_for - NOON for r in missed] == [timedelta(minutes=1), timedelta(minutes=2)]
    assert "beyond the misfire grace of 5s" in missed[-1].error_message


def test_a_new_job_does_not_backfill(database: Database):
    jobs = [Job(name="fresh", body=lambda ctx: None, schedule="* * * * *")]
    start = NOON + timedelta(minutes=5, seconds=10)
    assert (
        worker_for(database, jobs, clock=lambda: start, start_at=start).tick(start).outcomes == []
    )
    assert rows(database) == []


def test_a_pending_instant_that_expires_is_recorded_missed(database: Database):
    moment = {"now": NOON}
    jobs = [
        Job(name="up", body=lambda ctx: None, schedule="* * * * *"),
        Job(name="down", body=lambda ctx: None, schedule="* * * * *", run_after=("up",)),
    ]
    worker = worker_for(database, jobs, clock=lambda: moment["now"], start_at=NOON)
    worker.pending = latest_instants(worker.enabled, NOON)[1:]
    worker.claim_pending()
    moment["now"] = NOON + timedelta(minutes=1)
    report = worker.claim_pending()
    assert (report.expired, report.missed) == (1, 1)
    [missed] = rows(database)
    assert (missed.job_name, missed.status) == ("down", "MISSED")
    assert "not settled before the job's next instant" in missed.error_message


def test_instants_that_expired_while_behind_are_recorded_in_one_transaction(
    database: Database,
):
    # A worker that fell behind must not spend a transaction on every instant it
    # lost: that is how a slow tick turns into a spiral of misses.
    moment = {"now": NOON}
    jobs = [Job(name=f"job-{i}", body=lambda ctx: None, schedule="* * * * *") for i in range(30)]
    worker = worker_for(database, jobs, clock=lambda: moment["now"], start_at=NOON)
    worker.pending = latest_instants(worker.enabled, NOON)
    moment["now"] = NOON + timedelta(minutes=1)
    commits = []

    def count(conn) -> None:
        commits.append(conn)

    event.listen(database.engine, "commit", count)
    report = worker.claim_pending()
    event.remove(database.engine, "commit", count)
    assert (report.expired, report.missed) == (30, 30)
    assert sorted(r.job_name for r in rows(database) if r.status == "MISSED") == sorted(
        j.name for j in jobs
    )
    assert len(commits) == 1


# -- transactional jobs ---------------------------------------------------------------------------


@pytest.fixture
def ledger(database: Database) -> Database:
    with database.transaction() as session:
        session.execute(text("CREATE TABLE ledger (instant timestamptz PRIMARY KEY, amount int)"))
    return database


def _ledger(database: Database) -> list:
    with database.transaction() as session:
        return list(session.execute(text("SELECT amount FROM ledger")).scalars())


def _write_ledger(fail: bool):
    def body(ctx: RunContext):
        # The usual session pattern, commit included: it must not commit the run's transaction.
        with ctx.session() as session:
            session.execute(text("INSERT INTO ledger VALUES (:at, 100)"), {"at": ctx.scheduled_for})
            session.commit()
        if fail:
            raise RuntimeError("after the write")
        return {"written": 1}

    return body


def test_a_transactional_job_commits_its_writes_with_its_success(ledger: Database):
    jobs = [
        Job(name="book", body=_write_ledger(fail=False), schedule="* * * * *", transactional=True)
    ]
    worker_for(ledger, jobs, clock=lambda: NOON, start_at=NOON - timedelta(seconds=1)).tick(NOON)
    assert _ledger(ledger) == [100]
    assert rows(ledger)[0].status == "SUCCESS"


def test_a_failing_transactional_job_leaves_no_partial_writes(ledger: Database):
    jobs = [
        Job(name="book", body=_write_ledger(fail=True), schedule="* * * * *", transactional=True)
    ]
    worker_for(ledger, jobs, clock=lambda: NOON, start_at=NOON - timedelta(seconds=1)).tick(NOON)
    assert _ledger(ledger) == []
    assert rows(ledger)[0].status == "FAILURE"


def test_a_transactional_job_that_rolls_back_is_a_failure(ledger: Database):
    def body(ctx: RunContext):
        with ctx.session() as session:
            session.execute(text("INSERT INTO ledger VALUES (:at, 1)"), {"at": ctx.scheduled_for})
            session.rollback()

    jobs = [Job(name="undo", body=body, schedule="* * * * *", transactional=True)]
    worker_for(ledger, jobs, clock=lambda: NOON, start_at=NOON - timedelta(seconds=1)).tick(NOON)
    assert _ledger(ledger) == []
    [row] = rows(ledger)
    assert (row.status, row.error_message) == ("FAILURE", "the job rolled its transaction back")


def test_a_transactional_run_records_when_it_ended_not_when_its_transaction_began(
    ledger: Database,
):
    def body(ctx: RunContext):
        with ctx.session() as session:
            session.execute(text("SELECT pg_sleep(0.3)"))

    jobs = [Job(name="slow", body=body, schedule="* * * * *", transactional=True)]
    worker_for(ledger, jobs, clock=lambda: NOON, start_at=NOON - timedelta(seconds=1)).tick(NOON)
    [row] = rows(ledger)
    assert row.status == "SUCCESS"
    assert row.completed_at - row.started_at >= timedelta(seconds=0.3)


def test_a_transactional_run_taken_over_rolls_its_writes_back(ledger: Database):
    job = Job(name="book", body=_write_ledger(fail=False), schedule="* * * * *", transactional=True)
    run = claim(ledger, job_name="book")
    age_run(ledger, run.run_id, 3600)
    claim(ledger, job_name="book", scheduled_for=INSTANT + timedelta(minutes=1))
    outcome = execute(Store(ledger), job, run, Settings.from_env({}), alarm=Alarm())
    assert (outcome.status, outcome.recorded) == ("SUCCESS", False)
    assert _ledger(ledger) == []


def test_a_run_whose_transaction_cannot_begin_ends_failure_not_running(
    ledger: Database, monkeypatch
):
    class CannotBegin(Store):
        def open_run_transaction(self, *, timeout_s):
            raise DatabaseUnavailable("cannot reach the database: connection refused")

    jobs = [
        Job(name="book", body=_write_ledger(fail=False), schedule="* * * * *", transactional=True)
    ]
    worker = worker_for(
        CannotBegin(ledger), jobs, clock=lambda: NOON, start_at=NOON - timedelta(seconds=1)
    )
    worker.tick(NOON)
    [row] = rows(ledger)
    assert row.status == "FAILURE"
    assert row.error_message.startswith("could not begin the run: cannot reach the database")
    assert _ledger(ledger) == []
    assert worker.pending == []


# -- outages and clocks ----------------------------------------------------------------------------


def test_an_outcome_that_cannot_be_written_is_retried_until_it_lands(
    db_url, pg_admin_url, database: Database, caplog
):
    caplog.set_level(logging.INFO)

    def body(ctx: RunContext):
        refuse_connections(pg_admin_url, db_url, refused=True)
        threading.Timer(1.0, refuse_connections, (pg_admin_url, db_url, False)).start()
        return {"done": True}

    jobs = [Job(name="outage", body=body, schedule="* * * * *")]
    try:
        report = worker_for(
            database, jobs, clock=lambda: NOON, start_at=NOON - timedelta(seconds=1)
        ).tick(NOON)
    finally:
        refuse_connections(pg_admin_url, db_url, refused=False)
    assert [(o.status, o.recorded) for o in report.outcomes] == [("SUCCESS", True)]
    assert rows(database)[0].status == "SUCCESS"
    assert [getattr(r, "event", "") for r in caplog.records].count("run_record_failed") == 1


@pytest.mark.parametrize(("offset_s", "warned"), [(10, True), (-10, True), (0, False)])
def test_clock_skew_is_warned_about(database: Database, caplog, offset_s: int, warned: bool):
    skewed = lambda: utc_now() + timedelta(seconds=offset_s)  # noqa: E731
    worker_for(database, [Job(name="a", body=lambda ctx: None, schedule="* * * * *")], clock=skewed)
    events = [getattr(r, "event", "") for r in caplog.records]
    assert ("clock_skew" in events) is warned


# -- daylight saving, through the worker with an injected clock ------------------------------------


@pytest.mark.parametrize(
    ("schedule", "night_utc", "expected_local"),
    [
        # Fall back (Berlin, 2026-10-25): 02:30 happens twice; a fixed-time job runs once.
        ("30 2 * * *", datetime(2026, 10, 24, 22, 0, tzinfo=UTC), ["02:30+02:00"]),
        # Spring forward (2026-03-29): 02:30 does not exist; it runs at 03:00.
        ("30 2 * * *", datetime(2026, 3, 28, 22, 0, tzinfo=UTC), ["03:00+02:00"]),
        # A wildcard-hour job runs at every real instant of the repeated hour.
        (
            "*/30 * * * *",
            datetime(2026, 10, 24, 22, 0, tzinfo=UTC),
            ["02:00+02:00", "02:30+02:00", "02:00+01:00", "02:30+01:00"],
        ),
    ],
)
def test_dst_nights_through_the_worker(database: Database, schedule, night_utc, expected_local):
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    ran: list[str] = []
    jobs = [
        Job(
            name="nightly",
            body=lambda ctx: ran.append(ctx.scheduled_for.astimezone(berlin).strftime("%H:%M%z")),
            schedule=schedule,
        )
    ]
    moment = {"now": night_utc}
    worker = worker_for(
        database,
        jobs,
        environ={"CRON_TZ": "Europe/Berlin"},
        clock=lambda: moment["now"],
        start_at=night_utc,
    )
    for _ in range(8 * 4):  # eight hours, a tick every 15 minutes
        moment["now"] += timedelta(minutes=15)
        worker.tick(moment["now"])
    in_the_2_oclock_hour = [
        r[:8] + ":" + r[8:] for r in ran if r.startswith("02:") or r.startswith("03:00+02")
    ]
    assert in_the_2_oclock_hour == expected_local
    assert {r.status for r in rows(database)} == {"SUCCESS"}
