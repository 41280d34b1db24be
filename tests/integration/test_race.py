"""K processes released together claim the same (job, instant): exactly one wins, every round."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import pytest
from sqlalchemy import text

from app.db import Database
from app.lock import Claim, ClaimRequest, Skip, claim_run, ensure_jobs
from app.models import RunStatus
from app.outcomes import Outcome, finish_run
from tests.integration.helpers import INSTANT

PROCESSES = 8
ROUNDS = 25


def _claimer(url: str, barrier, results, wait_for_lock: bool) -> None:
    database = Database(url)
    try:
        for round_no in range(ROUNDS):
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


@pytest.mark.parametrize("wait_for_lock", [False, True], ids=["skip-locked", "wait"])
def test_exactly_one_process_wins_each_instant(database, db_url, wait_for_lock):
    ensure_jobs(database, ["contested"])
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    processes = [
        context.Process(target=_claimer, args=(db_url, barrier, results, wait_for_lock))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in range(PROCESSES * ROUNDS)]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    for round_no in range(ROUNDS):
        winners = [kind for r, kind in outcomes if r == round_no and kind == "claim"]
        assert len(winners) == 1, f"round {round_no}: {len(winners)} winners"

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
