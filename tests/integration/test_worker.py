"""The tick loop against a real database, with time passed in."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.config import Settings
from app.core.planning import latest_instants
from app.job import Job, PreCheckContext, RunContext
from app.registry import JobRegistry, configure
from app.runtime.finish import UNSTORABLE
from app.runtime.worker import Worker
from app.store.database import Database
from app.store.facade import Store
from tests.integration.helpers import FrozenClock, rows, wait_until, worker_for

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_worker(
    database: Database,
    jobs: list[Job],
    *,
    environ: dict[str, str] | None = None,
    worker_id: str = "test:1",
    clock: FrozenClock | None = None,
) -> Worker:
    return worker_for(
        database,
        jobs,
        environ=environ,
        clock=clock or FrozenClock(NOON + timedelta(seconds=1)),
        start_at=NOON - timedelta(seconds=1),
        worker_id=worker_id,
    )


def test_tick_runs_due_jobs_in_registration_order(database: Database):
    order: list[str] = []

    def body(ctx: RunContext):
        order.append(ctx.job_name)
        return {"job": ctx.job_name}

    jobs = [Job(name=n, body=body, schedule="* * * * *") for n in ("c", "a", "b")]
    report = make_worker(database, jobs).tick(NOON + timedelta(seconds=1))
    assert order == ["c", "a", "b"]
    assert [o.status for o in report.outcomes] == ["SUCCESS"] * 3
    assert [(r.job_name, r.status, r.scheduled_for, r.result) for r in rows(database)] == [
        ("c", "SUCCESS", NOON, {"job": "c"}),
        ("a", "SUCCESS", NOON, {"job": "a"}),
        ("b", "SUCCESS", NOON, {"job": "b"}),
    ]


def test_a_failing_body_is_recorded_and_the_tick_goes_on(database: Database):
    def broken(ctx):
        raise ValueError("provider said 503")

    jobs = [
        Job(name="broken", body=broken, schedule="* * * * *"),
        Job(name="fine", body=lambda ctx: None, schedule="* * * * *"),
    ]
    report = make_worker(database, jobs).tick(NOON)
    assert report.failed == 1
    broken_row, fine_row = rows(database)
    assert (broken_row.status, broken_row.error_message) == (
        "FAILURE",
        "ValueError: provider said 503",
    )
    assert broken_row.completed_at is not None
    assert fine_row.status == "SUCCESS"


def test_a_result_that_is_not_json_is_a_failure(database: Database):
    jobs = [Job(name="odd", body=lambda ctx: {"when": datetime.now(UTC)}, schedule="* * * * *")]
    make_worker(database, jobs).tick(NOON)
    [row] = rows(database)
    assert row.status == "FAILURE"
    assert "not JSON serializable" in row.error_message


def _raise_with_nul(ctx):
    raise ValueError("bad\x00byte")


def _raise_with_undecodable_bytes(ctx):
    raise ValueError(b"caf\xe9".decode("utf-8", "surrogateescape"))


@pytest.mark.parametrize(
    ("body", "pre_check", "expected"),
    [
        (
            lambda ctx: {"ratio": float("nan")},
            None,
            ("FAILURE", "ValueError: the result holds NaN"),
        ),
        (lambda ctx: {"name": ["a\x00b"]}, None, ("FAILURE", "ValueError: the result holds a NUL")),
        (_raise_with_nul, None, ("FAILURE", "ValueError: bad\\x00byte")),
        (_raise_with_undecodable_bytes, None, ("FAILURE", "ValueError: caf\\udce9")),
        (lambda ctx: None, lambda ctx: "done\x00", ("SKIPPED", "done\\x00")),
    ],
    ids=["nan-result", "nul-result", "nul-error", "surrogate-error", "nul-pre-check-reason"],
)
def test_what_postgres_cannot_store_still_ends_the_run(
    database: Database, body, pre_check, expected
):
    """NaN and NUL are refused by jsonb and text: the run ends, with a reason that can be stored."""
    jobs = [Job(name="odd", body=body, schedule="* * * * *", pre_check=pre_check)]
    make_worker(database, jobs).tick(NOON)
    [row] = rows(database)
    assert row.status == expected[0]
    assert row.error_message.startswith(expected[1])


def _refuse_updates(
    database: Database, *, when: str, message: str, errcode: str, unless: str = "false"
) -> None:
    """Make the server refuse updates of runs matching `when` (unless `unless`), with `errcode`."""
    with database.transaction() as session:
        session.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$BEGIN IF NOT ({unless}) THEN RAISE EXCEPTION '{message}' "
                f"USING ERRCODE = '{errcode}'; END IF; RETURN NEW; END$$"
            )
        )
        session.execute(
            text(
                "CREATE TRIGGER refuse BEFORE UPDATE ON job_execution FOR EACH ROW "
                f"WHEN ({when}) EXECUTE FUNCTION refuse()"
            )
        )


def test_an_outcome_the_server_refuses_is_recorded_as_failure(database: Database):
    """A data error (SQLSTATE 22) would recur; anything else is retried as an outage."""
    _refuse_updates(
        database,
        when="NEW.result ? 'refuse'",
        message="results with refuse are refused",
        errcode="invalid_parameter_value",
    )
    jobs = [Job(name="odd", body=lambda ctx: {"refuse": True}, schedule="* * * * *")]
    make_worker(database, jobs).tick(NOON)
    [row] = rows(database)
    assert (row.status, row.result) == ("FAILURE", None)
    assert row.error_message.startswith("outcome not stored: ")
    assert "results with refuse are refused" in row.error_message


def test_a_failure_the_server_refuses_is_recorded_in_plain_words(database: Database):
    _refuse_updates(
        database,
        when="NEW.status = 'FAILURE' AND NEW.error_message NOT LIKE '%(see the log)'",
        message="refused",
        errcode="invalid_parameter_value",
    )
    jobs = [Job(name="odd", body=_raise_with_nul, schedule="* * * * *")]
    make_worker(database, jobs).tick(NOON)
    [row] = rows(database)
    assert (row.status, row.error_message) == ("FAILURE", UNSTORABLE.error)


def _second_success(ctx):
    # A SUCCESS for the same instant, as a hand-written row would be: the lock bypassed.
    ctx.session().execute(
        text(
            "INSERT INTO job_execution (job_name, status, scheduled_for, trigger, attempt,"
            " worker_id, completed_at) VALUES (:job, 'SUCCESS', :at, 'manual', 99, 'x:1', now())"
        ),
        {"job": ctx.job_name, "at": ctx.scheduled_for},
    )


def test_a_transactional_second_success_is_recorded_failure_and_rolled_back(database: Database):
    jobs = [Job(name="book", body=_second_success, schedule="* * * * *", transactional=True)]
    make_worker(database, jobs).tick(NOON)
    [row] = rows(database)  # the body's own row went with its transaction
    assert (row.status, row.error_message) == (
        "FAILURE",
        "duplicate: this instant already has a SUCCESS run",
    )


def test_an_outcome_refused_for_another_reason_is_retried_until_it_lands(
    database: Database, caplog
):
    """A failover's read-only server refuses the write too, but not for good."""
    with database.transaction() as session:
        session.execute(text("CREATE TABLE gate (open boolean)"))
    _refuse_updates(
        database,
        when="NEW.status = 'SUCCESS'",
        message="read-only",
        errcode="read_only_sql_transaction",
        unless="EXISTS (SELECT FROM gate)",
    )
    jobs = [Job(name="fine", body=lambda ctx: {"done": True}, schedule="* * * * *")]
    worker = make_worker(database, jobs)
    alive: list[bool] = []
    worker.heartbeat.on_alive = lambda: alive.append(True)
    ticking = threading.Thread(target=worker.tick, args=(NOON,))
    ticking.start()
    for _ in range(600):  # bounds a hang only: the log says when the write was refused
        if any(getattr(r, "event", None) == "run_record_failed" for r in caplog.records):
            break
        threading.Event().wait(0.05)
    for _ in range(600):  # the retries say the worker is alive, for /healthz and systemd
        if len(alive) >= 2:
            break
        threading.Event().wait(0.05)
    assert len(alive) >= 2
    with database.transaction() as session:
        session.execute(text("INSERT INTO gate VALUES (true)"))
    ticking.join(timeout=30)
    [row] = rows(database)
    assert (row.status, row.result) == ("SUCCESS", {"done": True})


def test_a_disabled_job_writes_nothing(database: Database):
    ran = []
    jobs = [Job(name="off", body=lambda ctx: ran.append(1), schedule="* * * * *")]
    report = make_worker(database, jobs, environ={"OFF_ENABLED": "false"}).tick(NOON)
    assert (ran, report.outcomes, rows(database)) == ([], [], [])


def test_the_jobs_pre_check_sees_the_instant_and_can_skip(database: Database):
    seen: list[PreCheckContext] = []

    def pre_check(ctx: PreCheckContext) -> str | None:
        seen.append(ctx)
        return "invoices already synced for this hour" if ctx.scheduled_for == NOON else None

    ran = []
    jobs = [
        Job(
            name="sync",
            body=lambda ctx: ran.append(ctx.scheduled_for),
            schedule="* * * * *",
            pre_check=pre_check,
        )
    ]
    worker = make_worker(database, jobs)
    report = worker.tick(NOON)
    assert report.skipped == 1
    assert ran == []
    [skipped] = rows(database)
    assert (skipped.status, skipped.error_message) == (
        "SKIPPED",
        "invoices already synced for this hour",
    )
    worker.tick(NOON + timedelta(minutes=1))
    assert ran == [NOON + timedelta(minutes=1)]
    assert [c.scheduled_for for c in seen] == [NOON, NOON + timedelta(minutes=1)]


def test_a_late_replica_does_not_repeat_an_instant(database: Database):
    ran = []
    jobs = [Job(name="once", body=lambda ctx: ran.append(1), schedule="* * * * *")]
    first, second = (make_worker(database, jobs, worker_id=w) for w in ("w1", "w2"))
    first.tick(NOON)
    late = second.tick(NOON)
    assert ran == [1]
    assert late.skipped == 1
    assert len(rows(database)) == 1


def test_run_after_across_replicas(database: Database):
    """Replica 2 reaches the downstream job first; it waits for replica 1's upstream run."""
    events: list[str] = []
    upstream = Job(name="sync-invoices", body=lambda ctx: events.append("up"), schedule="* * * * *")
    downstream = Job(
        name="send-reminders",
        body=lambda ctx: events.append(f"down@{ctx.scheduled_for:%H:%M}"),
        schedule="* * * * *",
        run_after=("sync-invoices",),
    )
    replica_1 = make_worker(database, [upstream, downstream], worker_id="r1")
    replica_2 = make_worker(database, [upstream, downstream], worker_id="r2")

    # Replica 2 only gets to the downstream job (as if replica 1 held the upstream lock).
    replica_2.pending = latest_instants(replica_2.enabled, NOON)[1:]
    assert replica_2.claim_pending().outcomes == []
    assert [d.job.name for d in replica_2.pending] == ["send-reminders"]
    assert rows(database) == []

    replica_1.pending = latest_instants(replica_1.enabled, NOON)[:1]
    replica_1.claim_pending()
    assert events == ["up"]

    replica_2.claim_pending()
    assert events == ["up", "down@12:00"]
    assert replica_2.pending == []
    up_row, down_row = rows(database)
    assert (up_row.worker_id, down_row.worker_id) == ("r1", "r2")
    assert down_row.started_at >= up_row.completed_at


def test_run_after_skips_when_the_upstream_failed(database: Database):
    def broken(ctx):
        raise RuntimeError("no invoices")

    jobs = [
        Job(name="sync-invoices", body=broken, schedule="* * * * *"),
        Job(
            name="send-reminders",
            body=lambda ctx: None,
            schedule="* * * * *",
            run_after=("sync-invoices",),
        ),
    ]
    report = make_worker(database, jobs).tick(NOON)
    assert report.failed == 1
    assert report.skipped == 1
    assert [(r.job_name, r.status, r.error_message) for r in rows(database)] == [
        ("sync-invoices", "FAILURE", "RuntimeError: no invoices"),
        (
            "send-reminders",
            "SKIPPED",
            "upstream sync-invoices ended FAILURE: RuntimeError: no invoices",
        ),
    ]


def test_pending_instant_expires_at_the_jobs_next_instant(database: Database):
    clock = FrozenClock(NOON)
    jobs = [
        Job(name="up", body=lambda ctx: None, schedule="* * * * *"),
        Job(name="down", body=lambda ctx: None, schedule="* * * * *", run_after=("up",)),
    ]
    worker = make_worker(database, jobs, clock=clock)
    worker.pending = latest_instants(worker.enabled, NOON)[1:]
    worker.claim_pending()
    assert len(worker.pending) == 1
    clock.moment = NOON + timedelta(minutes=1)
    assert worker.claim_pending().expired == 1
    assert worker.pending == []


def test_run_forever_stops_on_the_event(database: Database):
    stop = threading.Event()
    settings = Settings.from_env({})
    jobs = [Job(name="yearly", body=lambda ctx: None, schedule="0 0 1 1 *")]
    worker = Worker(
        Store(database), configure(JobRegistry(jobs), settings), settings, stop_event=stop
    )
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert rows(database) == []


def test_run_once_settles_each_jobs_latest_instant(database: Database):
    jobs = [
        Job(name="minutely", body=lambda ctx: None, schedule="* * * * *"),
        Job(name="hourly", body=lambda ctx: None, schedule="0 * * * *"),
    ]
    clock = FrozenClock(NOON + timedelta(minutes=7, seconds=3))
    worker = worker_for(database, jobs, clock=clock, registered_before_latest=True)
    report = worker.run_once()
    assert report.failed == 0
    assert {(r.job_name, r.scheduled_for) for r in rows(database)} == {
        ("minutely", NOON + timedelta(minutes=7)),
        ("hourly", NOON),
    }


def test_run_forever_survives_the_database_refusing_connections(
    db_url: str, pg_admin_url: str, caplog
):
    """Connections refused mid-loop: one error line, back-off, then runs resume."""
    import psycopg
    from sqlalchemy.engine import make_url

    caplog.set_level("INFO")
    name = make_url(db_url).database
    database = Database(db_url)
    stop = threading.Event()
    settings = Settings.from_env({})
    jobs = [Job(name="every-second", body=lambda ctx: None, schedule="* * * * * *")]
    worker = Worker(
        Store(database), configure(JobRegistry(jobs), settings), settings, stop_event=stop
    )

    def set_connections(allowed: bool) -> None:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
            if not allowed:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )

    def count_runs() -> int:
        with database.transaction() as session:
            return session.execute(
                text("SELECT count(*) FROM job_execution WHERE status = 'SUCCESS'")
            ).scalar()

    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    try:
        wait_until(lambda: count_runs() >= 1, what="a first SUCCESS")
        set_connections(False)
        wait_until(
            lambda: any(getattr(r, "event", "") == "database_unavailable" for r in caplog.records),
            what="a database_unavailable log record",
        )
        set_connections(True)
        before = count_runs()
        wait_until(lambda: count_runs() >= before + 2, what="two more SUCCESS after the outage")
    finally:
        set_connections(True)
        stop.set()
        thread.join(timeout=30)
        database.dispose()
    assert not thread.is_alive()
    events = [getattr(r, "event", "") for r in caplog.records]
    assert events.count("database_unavailable") == 1
    assert events.count("database_recovered") == 1


def test_run_at_start_runs_the_latest_instant_once_across_replicas(database: Database):
    ran: list[str] = []
    jobs = [
        Job(
            name="seed",
            body=lambda ctx: ran.append(f"{ctx.scheduled_for:%H:%M}"),
            schedule="every 5m",
            run_at_start=True,
        ),
        Job(name="plain", body=lambda ctx: ran.append("plain"), schedule="every 5m"),
    ]
    first_at = NOON + timedelta(minutes=2, seconds=30)
    first = worker_for(database, jobs, clock=FrozenClock(first_at), start_at=first_at)
    first.tick(first_at)
    assert ran == ["12:00"]  # at once, for the latest instant; `plain` waits for 12:05
    second_at = first_at + timedelta(seconds=20)
    second = worker_for(
        database, jobs, clock=FrozenClock(second_at), start_at=second_at, worker_id="test:2"
    )
    second.tick(second_at)
    assert ran == ["12:00"]  # that instant has its outcome: one run across replicas
    assert [(r.job_name, r.status) for r in rows(database)] == [("seed", "SUCCESS")]


def test_run_at_start_must_be_a_bool():
    from app.errors import InvalidJob

    with pytest.raises(InvalidJob, match="run_at_start='yes' is not True or False"):
        Job(name="seed", body=lambda ctx: None, run_at_start="yes")


def _register_at(database: Database, name: str, at: datetime) -> None:
    with database.transaction() as session:
        session.execute(
            text("INSERT INTO job (name, created_at) VALUES (:n, :t)"), {"n": name, "t": at}
        )


def test_a_new_job_starts_from_its_registration_not_from_an_older_instant(database: Database):
    """`worker --once` (a timer, a CronJob) no longer runs a new daily job at once, for an
    instant long before it was deployed; it runs the first instant after deployment."""
    ran: list[str] = []
    jobs = [
        Job(name="deployed-before", body=lambda ctx: ran.append("before"), schedule="0 0 * * *"),
        Job(name="deployed-after", body=lambda ctx: ran.append("after"), schedule="0 0 * * *"),
    ]
    midnight = NOON + timedelta(hours=12)  # 2026-01-02 00:00
    _register_at(database, "deployed-before", midnight - timedelta(hours=6))
    _register_at(database, "deployed-after", midnight + timedelta(hours=5))
    at_six = midnight + timedelta(hours=6)
    report = worker_for(database, jobs, clock=FrozenClock(at_six)).run_once()
    assert ran == ["before"]  # its midnight came after it was deployed: run, late
    assert [(r.job_name, r.scheduled_for) for r in rows(database)] == [
        ("deployed-before", midnight)
    ]
    assert report.failed == 0
