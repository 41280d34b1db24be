"""The console keeps each job's instants around now from one request to the next: what it
shows must be what listing them afresh would show, whatever the clock does between."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.console.service import NEXT_INSTANTS, RECENT_INSTANTS, instants_around
from app.core.schedule import parse_schedule

PARIS = ZoneInfo("Europe/Paris")
# Just before Paris falls back (2026-10-25 01:00 UTC), so the walks cross the repeated hour.
START = datetime(2026, 10, 24, 22, 59, 50, tzinfo=UTC)
STEPS_S = [0, 1, 9, 20, 30, 45, 61, 600, 3599, 3600, 7200, 86400, -30, 5, 3 * 86400, 0.5]


@pytest.mark.parametrize(
    "expression",
    ["every 30s", "* * * * *", "*/7 * * * *", "30 2 * * *", "0 9 * * 1-5", "*/20 * * * * *"],
)
def test_instants_kept_between_requests_are_those_listed_afresh(expression):
    schedule = parse_schedule(expression, zone=PARIS, source="test")
    known, now = None, START
    for step_s in STEPS_S * 3:
        now += timedelta(seconds=step_s)
        known = instants_around(schedule, now, known)
        fresh = instants_around(schedule, now)
        assert (known.recent, known.upcoming) == (fresh.recent, fresh.upcoming), now
        assert len(known.recent) == RECENT_INSTANTS
        assert len(known.upcoming) == NEXT_INSTANTS
        assert known.recent[-1] <= now < known.upcoming[0]


def test_instants_not_yet_passed_are_not_walked_again():
    schedule = parse_schedule("0 * * * *", zone=PARIS, source="test")
    known = instants_around(schedule, START)
    assert instants_around(schedule, START + timedelta(seconds=5), known) is known
