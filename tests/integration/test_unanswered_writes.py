"""Writes whose answers never come: the worker learns from the table what happened.

The relay ends a connection over a claim's COMMIT, or over a run's finish,
either after the server got it (it committed; only the answer is lost) or before
(it rolled back). The worker sees the same broken connection both times; the
table tells them apart.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from app.errors import DatabaseError
from app.job import Job, RunContext
from app.runtime.unanswered import NEXT_INSTANT_CAME, WORKER_STOPPING, unanswered_because
from app.runtime.worker import Worker, utc_now
from app.store.database import Database
from tests.integration.cli_helpers import cronlock
from tests.integration.helpers import (
    FrozenClock,
    age_run,
    claim,
    register_before_latest,
    rows,
    wait_for_lock_wait,
    worker_for,
    yearly_failure_due_for_retry,
)
from tests.integration.network import Relay, through, upstream_of

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CLAIM_INSERT = b"INSERT INTO job_execution"
FINISH = b"UPDATE job_execution SET status="


@pytest.fixture
def relay(pg_admin_url: str) -> Iterator[Relay]:
    relay = Relay(upstream_of(pg_admin_url)).start()
    yield relay
    relay.close()


@pytest.fixture
def ledger(database: Database) -> Database:
    with database.transaction() as session:
        session.execute(text("CREATE TABLE ledger (instant timestamptz PRIMARY KEY, amount int)"))
    return database


@pytest.fixture
def relayed(db_url: str, relay: Relay) -> Iterator[Database]:
    """The test's database, reached through the relay."""
    database = Database(through(db_url, relay.port))
    yield database
    database.dispose()


def _noon_worker(relayed: Database, jobs: list[Job]) -> tuple[Worker, FrozenClock]:
    """A worker on `jobs`, through the relay, whose clock stands a second after NOON."""
    clock = FrozenClock(NOON + timedelta(seconds=1))
    return worker_for(relayed, jobs, clock=clock, start_at=NOON - timedelta(seconds=1)), clock


def _sync_worker(relayed: Database, ran: list[int]) -> tuple[Worker, FrozenClock]:
    """`_noon_worker` on one every-minute job that notes the run ids it ran for."""

    def sync(ctx: RunContext) -> None:
        ran.append(ctx.run_id)

    return _noon_worker(relayed, [Job(name="sync", body=sync, schedule="* * * * *")])


@pytest.mark.parametrize("reaches_server", [True, False], ids=["answer-lost", "commit-lost"])
def test_an_unanswered_claim_is_settled_from_the_table_and_runs_once(
    database: Database, relay: Relay, relayed: Database, reaches_server: bool
):
    ran: list[int] = []
    loss = relay.break_over(b"COMMIT", after=CLAIM_INSERT, reaches_server=reaches_server)

    worker, clock = _sync_worker(relayed, ran)
    report = worker.tick(clock())
    # A rolled-back claim's session may still hold the job's row for a moment.
    report.add(worker.settle_pending())

    assert loss.lost.is_set()
    [run] = rows(database)
    assert (run.status, run.scheduled_for) == ("SUCCESS", NOON)
    assert ran == [run.id]
    assert [(o.run_id, o.status) for o in report.outcomes] == [(run.id, "SUCCESS")]
    assert (run.id == 1) is reaches_server  # the claimed run itself, when its claim committed


def test_a_second_unanswered_claim_in_a_pass_waits_for_the_next_pass(
    database: Database, relay: Relay, relayed: Database
):
    ran: list[str] = []

    def body(ctx: RunContext) -> None:
        ran.append(ctx.job_name)

    loss = relay.break_over(b"COMMIT", after=CLAIM_INSERT, reaches_server=True, times=2)
    jobs = [Job(name=name, body=body, schedule="* * * * *") for name in ("first", "second")]
    worker, clock = _noon_worker(relayed, jobs)

    report = worker.tick(clock())

    assert loss.lost.is_set()
    assert (ran, [o.status for o in report.outcomes]) == (["first"], ["SUCCESS"])
    assert [d.job.name for d in worker.pending] == ["second"]

    report = worker.settle_pending()

    assert ran == ["first", "second"]
    assert [(r.job_name, r.status) for r in rows(database)] == [
        ("first", "SUCCESS"),
        ("second", "SUCCESS"),
    ]
    assert [o.status for o in report.outcomes] == ["SUCCESS"]


def _unanswered_through_an_outage(
    database: Database, relay: Relay, relayed: Database
) -> tuple[Worker, FrozenClock, list[int]]:
    """A worker whose claim committed unanswered, then found the server away; it is back now.

    Returns the worker, its clock, and the run ids its body ran for.
    """
    ran: list[int] = []
    loss = relay.break_over(b"COMMIT", after=CLAIM_INSERT, reaches_server=True, outage=True)
    worker, clock = _sync_worker(relayed, ran)
    with pytest.raises(DatabaseError):
        worker.tick(clock())
    [claimed] = rows(database)
    assert (claimed.status, ran) == ("RUNNING", [])  # live to everyone, this worker too
    loss.outage.clear()
    return worker, clock, ran


def test_an_unanswered_claim_waits_out_an_outage_then_runs(
    database: Database, relay: Relay, relayed: Database
):
    worker, clock, ran = _unanswered_through_an_outage(database, relay, relayed)

    report = worker.tick(clock())

    [run] = rows(database)
    assert (run.status, ran) == ("SUCCESS", [run.id])
    assert [o.status for o in report.outcomes] == ["SUCCESS"]


def test_an_unanswered_claim_is_missed_once_its_next_instant_came(
    database: Database, relay: Relay, relayed: Database
):
    worker, clock, ran = _unanswered_through_an_outage(database, relay, relayed)

    clock.moment = NOON + timedelta(minutes=1, seconds=1)
    report = worker.tick(clock())

    missed, ran_next = rows(database)
    assert (missed.status, missed.scheduled_for, missed.error_message) == (
        "MISSED",
        NOON,
        f"missed: {unanswered_because(NEXT_INSTANT_CAME)}",
    )
    assert (ran_next.status, ran_next.scheduled_for) == ("SUCCESS", NOON + timedelta(minutes=1))
    assert ran == [ran_next.id]
    assert report.missed == 1
    assert [o.status for o in report.outcomes] == ["SUCCESS"]


def test_a_stopping_worker_ends_an_unanswered_claims_run_instead_of_starting_it(
    database: Database, relay: Relay, relayed: Database
):
    worker, clock, ran = _unanswered_through_an_outage(database, relay, relayed)

    worker.request_stop()
    report = worker.tick(clock())

    [run] = rows(database)
    assert (run.status, run.error_message) == (
        "MISSED",
        f"missed: {unanswered_because(WORKER_STOPPING)}",
    )
    assert (ran, report.missed) == ([], 1)


TAKEN_OVER = "abandoned: no heartbeat; taken over by another worker"


@pytest.mark.parametrize(
    ("meanwhile", "expected"),
    [
        ("stop", ("MISSED", f"missed: {unanswered_because(WORKER_STOPPING)}")),
        ("takeover", ("FAILURE", TAKEN_OVER)),
    ],
)
def test_what_happens_while_the_settling_renewal_waits_wins(
    database: Database,
    relay: Relay,
    relayed: Database,
    *,
    meanwhile: str,
    expected: tuple[str, str],
):
    worker, clock, ran = _unanswered_through_an_outage(database, relay, relayed)
    [claimed] = rows(database)

    with database.transaction() as session:
        # Hold the run's row, so the renewal that settles the claim waits for it.
        session.execute(
            text("SELECT 1 FROM job_execution WHERE id = :id FOR UPDATE"), {"id": claimed.id}
        )
        ticking = threading.Thread(target=worker.tick, args=(clock(),))
        ticking.start()
        wait_for_lock_wait(database, "UPDATE job_execution SET heartbeat_at")
        if meanwhile == "stop":
            worker.request_stop()
        else:  # another worker found the run stale and marked it, as a takeover does
            session.execute(
                text(
                    "UPDATE job_execution SET status = 'FAILURE', completed_at = now(), "
                    "error_message = :error WHERE id = :id"
                ),
                {"id": claimed.id, "error": TAKEN_OVER},
            )
    ticking.join(timeout=30)

    [run] = rows(database)
    assert (run.status, run.error_message) == expected
    assert ran == []  # not started by a stopping worker, nor on a run taken over


def test_an_unanswered_retry_past_its_next_instant_ends_failure_for_cronlock_retry(
    database: Database, relay: Relay, relayed: Database
):
    moment = [utc_now()]
    worker = yearly_failure_due_for_retry(relayed, moment)
    # The retry's claim is the one whose COMMIT goes unanswered: it consumes the retry.
    loss = relay.break_over(b"COMMIT", after=b"SET retry_at=", reaches_server=True, outage=True)
    moment[0] = utc_now()
    with pytest.raises(DatabaseError):
        worker.tick(moment[0])
    assert loss.lost.is_set()

    loss.outage.clear()
    [first] = rows(database, "attempt = 1")
    moment[0] = first.scheduled_for.replace(year=first.scheduled_for.year + 1) + timedelta(
        seconds=1
    )
    worker.tick(moment[0])

    attempts = [
        (r.status, r.error_message)
        for r in rows(database, f"scheduled_for = '{first.scheduled_for.isoformat()}'")
    ]
    assert attempts == [
        ("FAILURE", "RuntimeError: down"),
        ("FAILURE", f"retry not run: {unanswered_because(NEXT_INSTANT_CAME)}"),
    ]


@pytest.mark.parametrize("reaches_server", [True, False], ids=["answer-lost", "commit-lost"])
@pytest.mark.parametrize("command", [("run", "sync"), ("worker", "--once")], ids=" ".join)
def test_a_command_settles_its_unanswered_claim_before_it_exits(
    database: Database,
    relay: Relay,
    db_url: str,
    tmp_path: Path,
    *,
    reaches_server: bool,
    command: tuple[str, ...],
):
    module = tmp_path / "jobs.py"
    module.write_text(
        "from app.job import job\n\n"
        "@job('sync', schedule='* * * * *')\n"
        "def sync(ctx):\n"
        "    return {'ran': ctx.run_id}\n\n"
        "JOBS = [sync]\n"
    )
    register_before_latest(database, {"sync": "* * * * *"})  # for `worker --once`
    loss = relay.break_over(b"COMMIT", after=CLAIM_INSERT, reaches_server=reaches_server)

    result = cronlock(
        *command,
        cwd=tmp_path,
        DATABASE_URL=through(db_url, relay.port),
        JOBS_MODULE=str(module),
    )

    assert loss.lost.is_set()
    assert result.returncode == 0, result.stderr
    [run] = rows(database)
    assert (run.status, run.result) == ("SUCCESS", {"ran": run.id})


def _fenced(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "run_fenced"]


@pytest.mark.parametrize("reaches_server", [True, False], ids=["answer-lost", "write-lost"])
def test_a_finish_whose_answer_was_lost_is_known_to_have_landed(
    database: Database,
    relay: Relay,
    relayed: Database,
    reaches_server: bool,
    caplog: pytest.LogCaptureFixture,
):
    def fails(ctx: RunContext) -> None:
        raise RuntimeError("provider said 503")

    loss = relay.break_over(FINISH, reaches_server=reaches_server)
    jobs = [Job(name="sync", body=fails, schedule="* * * * *")]
    worker, clock = _noon_worker(relayed, jobs)

    [outcome] = worker.tick(clock()).outcomes

    assert loss.lost.is_set()
    assert (outcome.status, outcome.recorded) == ("FAILURE", True)
    [run] = rows(database)
    assert (run.status, run.error_message) == ("FAILURE", "RuntimeError: provider said 503")
    assert _fenced(caplog) == []


def test_a_lost_answer_after_a_takeover_is_still_fenced_off(
    database: Database, relay: Relay, relayed: Database, caplog: pytest.LogCaptureFixture
):
    def taken_over(ctx: RunContext) -> None:
        # Another worker finds this run stale and takes the job over, mid-body.
        age_run(database, ctx.run_id, 3600)
        claim(database, "sync", scheduled_for=NOON + timedelta(minutes=1), stale_after_s=60)

    loss = relay.break_over(FINISH, reaches_server=True)
    jobs = [Job(name="sync", body=taken_over, schedule="* * * * *")]
    worker, clock = _noon_worker(relayed, jobs)

    [outcome] = worker.tick(clock()).outcomes

    assert loss.lost.is_set()
    assert outcome.recorded is False
    abandoned = rows(database)[0]
    assert (abandoned.status, abandoned.error_message[:10]) == ("FAILURE", "abandoned:")
    assert len(_fenced(caplog)) == 1


@pytest.mark.parametrize(
    ("reaches_server", "recorded", "ledger_rows"),
    [(True, "SUCCESS", [100]), (False, "FAILURE", [])],
    ids=["answer-lost", "commit-lost"],
)
def test_a_transactional_commit_whose_answer_was_lost_is_read_back(
    ledger: Database,
    relay: Relay,
    relayed: Database,
    caplog: pytest.LogCaptureFixture,
    *,
    reaches_server: bool,
    recorded: str,
    ledger_rows: list[int],
):
    def book(ctx: RunContext) -> dict[str, int]:
        ctx.session().execute(
            text("INSERT INTO ledger VALUES (:at, 100)"), {"at": ctx.scheduled_for}
        )
        return {"booked": 100}

    loss = relay.break_over(b"COMMIT", after=FINISH, reaches_server=reaches_server)
    jobs = [Job(name="book", body=book, schedule="* * * * *", transactional=True)]
    worker, clock = _noon_worker(relayed, jobs)

    [outcome] = worker.tick(clock()).outcomes

    assert loss.lost.is_set()
    assert (outcome.status, outcome.recorded) == (recorded, True)
    [run] = rows(ledger)
    assert run.status == recorded
    with ledger.transaction() as session:
        assert list(session.execute(text("SELECT amount FROM ledger")).scalars()) == ledger_rows
    assert _fenced(caplog) == []
