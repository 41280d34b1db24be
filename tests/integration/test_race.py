"""K processes released together claim the same (job, instant): exactly one wins, every round."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import pytest
from sqlalchemy import text

from app.core.claims import Claim, ClaimRequest, Skip
from app.core.outcomes import Outcome, RunStatus
from app.store.claiming import claim_next, claim_run, ensure_jobs
from app.store.database import Database
from app.store.runs import finish_run
from tests.integration.helpers import INSTANT

PROCESSES = 8
ROUNDS = 25


def _claimer(
    url: str, barrier, results, wait_for_lock: bool, *, rounds: int = ROUNDS, pooler: str = "none"
) -> None:
    database = Database(url, pooler=pooler)
    try:
        for round_no in range(rounds):
            barrier.wait(timeout=30)
            outcome = claim_run(
                database,
                ClaimRequest(
                    job_name="contested",
                    scheduled_for=INSTANT + timedelta(minutes=round_no),
                    trigger="schedule",
                    worker_id=f"proc:{multiprocessing.current_process().pid}",
                    stale_after_s=3600,
                    wait_for_lock=wait_for_lock,
                ),
            )
            if isinstance(outcome, Claim):
                finish_run(database, outcome.run_id, Outcome(RunStatus.SUCCESS))
                results.put((round_no, "claim"))
            else:
                results.put((round_no, "skip" if isinstance(outcome, Skip) else "locked"))
    finally:
        database.dispose()


def race(url: str, *, wait_for_lock: bool, rounds: int = ROUNDS, pooler: str = "none") -> None:
    """PROCESSES claimers released together for each of `rounds` instants of "contested":
    every process exits cleanly, and exactly one wins each round."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    processes = [
        context.Process(
            target=_claimer,
            args=(url, barrier, results, wait_for_lock),
            kwargs={"rounds": rounds, "pooler": pooler},
        )
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in range(PROCESSES * rounds)]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    for round_no in range(rounds):
        winners = [kind for r, kind in outcomes if r == round_no and kind == "claim"]
        assert len(winners) == 1, f"round {round_no}: {len(winners)} winners"


@pytest.mark.parametrize("wait_for_lock", [False, True], ids=["skip-locked", "wait"])
def test_exactly_one_process_wins_each_instant(database, db_url, wait_for_lock):
    ensure_jobs(database, ["contested"])
    race(db_url, wait_for_lock=wait_for_lock)

    with database.transaction() as session:
        per_instant = session.execute(
            text(
                "SELECT scheduled_for, count(*) FROM job_execution "
                "GROUP BY scheduled_for HAVING count(*) <> 1"
            )
        ).all()
        statuses = session.execute(text("SELECT DISTINCT status FROM job_execution")).scalars()
        assert per_instant == []
        assert list(statuses) == ["SUCCESS"]


SPREAD_JOBS = 60


def _spreader(url: str, barrier, results) -> None:
    """Work through every job's instant with claim_next, as a worker's tick does."""
    database = Database(url)
    worker_id = f"proc:{multiprocessing.current_process().pid}"
    requests = [
        ClaimRequest(
            job_name=f"spread-{i:02d}",
            scheduled_for=INSTANT,
            trigger="schedule",
            worker_id=worker_id,
            stale_after_s=3600,
        )
        for i in range(SPREAD_JOBS)
    ]
    claimed, settled, held = [], 0, []
    try:
        barrier.wait(timeout=30)
        queue = list(requests)
        while queue:
            window, queue = queue[:4], queue[4:]
            found = claim_next(database, window)
            settled += len(found.settled)
            taken = len(window) if found.position is None else found.position
            open_ = [r for i, r in enumerate(window) if i not in found.settled]
            held += [r.job_name for r in open_ if window.index(r) < taken]
            queue = [r for r in open_ if window.index(r) > taken] + queue
            if isinstance(found.result, Claim):
                finish_run(database, found.result.run_id, Outcome(RunStatus.SUCCESS))
                claimed.append(found.result.job_name)
            elif found.position is not None:  # settled between the pick and the state read
                settled += 1
        results.put((claimed, settled, held))
    finally:
        database.dispose()


def test_replicas_spread_over_a_tick_and_claim_each_instant_once(database, db_url):
    ensure_jobs(database, [f"spread-{i:02d}" for i in range(SPREAD_JOBS)])
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    processes = [
        context.Process(target=_spreader, args=(db_url, barrier, results)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    claimed = [name for names, _, _ in reports for name in names]
    assert sorted(claimed) == [f"spread-{i:02d}" for i in range(SPREAD_JOBS)]
    # Each process accounts for every job once: claimed, found settled, or held by another.
    for names, settled, held in reports:
        assert len(names) + settled + len(held) == SPREAD_JOBS
    with database.transaction() as session:
        counts = session.execute(
            text("SELECT status, count(*) FROM job_execution GROUP BY status")
        ).all()
    assert [tuple(row) for row in counts] == [("SUCCESS", SPREAD_JOBS)]
