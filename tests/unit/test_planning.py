"""The tick planner, without a database: what is due, missed, expired, and what comes next."""

from datetime import UTC, datetime, timedelta

from app.config import Settings
from app.core.planning import (
    EXPIRED_REASON,
    MAX_MISSED_SCAN,
    Missed,
    PendingInstant,
    instants_between,
    latest_instants,
    missed_for,
    next_instant,
    plan_tick,
    upstreams_at,
    wake_at,
)
from app.job import Job
from app.registry import JobRegistry, configure


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def configured(*jobs: Job, environ: dict[str, str] | None = None):
    settings = Settings.from_env(environ or {})
    return configure(JobRegistry(list(jobs)), settings)


def enabled(*jobs: Job, environ: dict[str, str] | None = None):
    return [j for j in configured(*jobs, environ=environ) if j.enabled]


def job(name: str, schedule: str, **options) -> Job:
    return Job(name=name, body=lambda ctx: None, schedule=schedule, **options)


def test_a_tick_queues_only_the_latest_instant_after_the_cursor():
    jobs = enabled(job("a", "* * * * *"), job("b", "0 * * * *"))
    cursors = {"a": at(2026, 1, 1, 12, 2, 30), "b": at(2026, 1, 1, 12, 0)}
    plan = plan_tick(jobs, cursors, [], at(2026, 1, 1, 12, 3, 5))
    assert [(p.job.name, p.scheduled_for, p.expires_at) for p in plan.queue] == [
        ("a", at(2026, 1, 1, 12, 3), at(2026, 1, 1, 12, 4)),
    ]
    assert plan.missed == []
    assert plan.something_due
    assert plan.cursors == {"a": at(2026, 1, 1, 12, 3, 5), "b": at(2026, 1, 1, 12, 3, 5)}


def test_after_an_outage_the_latest_runs_late_and_the_older_are_missed():
    jobs = enabled(job("a", "* * * * *"))
    now = at(2026, 1, 1, 12, 3, 20)
    plan = plan_tick(jobs, {"a": at(2026, 1, 1, 12, 0)}, [], now)
    assert [p.scheduled_for for p in plan.queue] == [at(2026, 1, 1, 12, 3)]
    assert [m.scheduled_for for m in plan.missed] == [at(2026, 1, 1, 12, 1), at(2026, 1, 1, 12, 2)]
    assert all(m.reason.startswith("missed: no worker ran it; caught up at") for m in plan.missed)


def test_an_instant_later_than_its_misfire_grace_is_missed_too():
    jobs = enabled(job("a", "* * * * *", misfire_grace_s=10))
    plan = plan_tick(jobs, {"a": at(2026, 1, 1, 12, 0)}, [], at(2026, 1, 1, 12, 3, 11))
    assert plan.queue == []
    assert [m.scheduled_for for m in plan.missed] == [at(2026, 1, 1, 12, m) for m in (1, 2, 3)]
    assert plan.missed[-1].reason == "missed: 11s late, beyond the misfire grace of 10s"


def test_a_zero_grace_still_allows_the_on_time_slack():
    jobs = enabled(job("a", "* * * * *", misfire_grace_s=0))
    plan = plan_tick(jobs, {"a": at(2026, 1, 1, 12, 2)}, [], at(2026, 1, 1, 12, 3, 0, 500_000))
    assert [p.scheduled_for for p in plan.queue] == [at(2026, 1, 1, 12, 3)]


def test_an_instant_already_pending_is_not_queued_twice():
    jobs = enabled(job("a", "* * * * *"))
    [pending] = latest_instants(jobs, at(2026, 1, 1, 12, 3))
    plan = plan_tick(jobs, {"a": at(2026, 1, 1, 12, 2, 59)}, [pending], at(2026, 1, 1, 12, 3, 1))
    assert plan.queue == []
    assert plan.something_due


def test_pending_instants_expire_when_the_jobs_next_instant_comes():
    jobs = enabled(job("a", "* * * * *"))
    [pending] = latest_instants(jobs, at(2026, 1, 1, 12, 3))
    retry = PendingInstant(jobs[0], at(2026, 1, 1, 12, 2), at(2026, 1, 1, 12, 3), retry=True)
    before = plan_tick(jobs, {"a": at(2026, 1, 1, 12, 3)}, [pending], at(2026, 1, 1, 12, 3, 59))
    assert before.expired == []
    plan = plan_tick(jobs, {"a": at(2026, 1, 1, 12, 3)}, [pending, retry], at(2026, 1, 1, 12, 4))
    assert plan.expired == [pending, retry]
    # An expired retry keeps its FAILURE; an expired first run is recorded MISSED.
    assert missed_for(plan.expired) == [Missed("a", at(2026, 1, 1, 12, 3), EXPIRED_REASON)]


def test_a_gap_longer_than_the_scan_is_reported_not_listed():
    jobs = enabled(job("s", "every 1s"))
    start = at(2026, 1, 1, 12, 0)
    now = start + timedelta(seconds=MAX_MISSED_SCAN + 500)
    plan = plan_tick(jobs, {"s": start}, [], now)
    assert len(plan.missed) == MAX_MISSED_SCAN - 1
    [gap] = plan.gaps
    assert (gap.first, gap.until) == (start + timedelta(seconds=1), now - timedelta(seconds=999))


def test_a_job_without_a_cursor_starts_from_now():
    plan = plan_tick(enabled(job("a", "* * * * *")), {}, [], at(2026, 1, 1, 12, 3))
    assert plan.queue == []
    assert plan.missed == []
    assert plan.cursors == {"a": at(2026, 1, 1, 12, 3)}


def test_fixed_hour_jobs_run_once_on_the_night_the_clock_falls_back():
    # Europe/Berlin leaves summer time on 2026-10-25: 02:30 local happens twice.
    jobs = enabled(job("nightly", "30 2 * * *"), environ={"CRON_TZ": "Europe/Berlin"})
    instants = instants_between(jobs[0], at(2026, 10, 24, 12), at(2026, 10, 25, 12))
    assert instants == [at(2026, 10, 25, 0, 30)]  # the first 02:30 (CEST)


def test_wildcard_hour_jobs_run_at_every_real_instant_through_the_change():
    jobs = enabled(job("quarterly", "*/30 * * * *"), environ={"CRON_TZ": "Europe/Berlin"})
    instants = instants_between(jobs[0], at(2026, 10, 24, 23, 59), at(2026, 10, 25, 2, 0))
    # 01:00 .. 03:00 local is three real hours that night: six half hours plus the last.
    assert instants == [at(2026, 10, 25, 0, 0) + timedelta(minutes=30 * i) for i in range(5)]


def test_a_fixed_hour_job_skipped_by_spring_forward_runs_at_the_first_valid_time():
    # 2026-03-29 02:30 does not exist in Berlin: it runs once that day.
    jobs = enabled(job("nightly", "30 2 * * *"), environ={"CRON_TZ": "Europe/Berlin"})
    instants = instants_between(jobs[0], at(2026, 3, 28, 12), at(2026, 3, 29, 12))
    assert len(instants) == 1


def test_latest_instants_take_each_jobs_latest():
    jobs = enabled(job("a", "* * * * *"), job("b", "0 * * * *"))
    due = latest_instants(jobs, at(2026, 1, 1, 12, 3, 5))
    assert [(d.job.name, d.scheduled_for) for d in due] == [
        ("a", at(2026, 1, 1, 12, 3)),
        ("b", at(2026, 1, 1, 12, 0)),
    ]


def test_disabled_jobs_are_never_planned():
    assert enabled(job("a", "* * * * *"), environ={"A_ENABLED": "false"}) == []
    assert next_instant([], at(2026, 1, 1, 12, 0)) is None


def test_next_instant_is_the_earliest_of_any_job():
    jobs = enabled(job("a", "*/5 * * * *"), job("b", "every 2m"))
    assert next_instant(jobs, at(2026, 1, 1, 12, 0)) == at(2026, 1, 1, 12, 2)


def test_upstreams_count_only_when_enabled_and_due_at_the_same_instant():
    up_hourly = job("up-hourly", "0 * * * *")
    up_minutely = job("up-minutely", "* * * * *")
    up_off = job("up-off", "* * * * *")
    down = job("down", "* * * * *", run_after=("up-hourly", "up-minutely", "up-off"))
    jobs = configured(up_hourly, up_minutely, up_off, down, environ={"UP_OFF_ENABLED": "0"})
    by_name = {j.name: j for j in jobs}
    [on_the_hour] = [
        d for d in latest_instants(jobs, at(2026, 1, 1, 12, 0)) if d.job.name == "down"
    ]
    [mid_hour] = [d for d in latest_instants(jobs, at(2026, 1, 1, 12, 7)) if d.job.name == "down"]
    assert upstreams_at(on_the_hour, by_name) == ["up-hourly", "up-minutely"]
    assert upstreams_at(mid_hour, by_name) == ["up-minutely"]


def test_the_loop_wakes_at_whatever_comes_first():
    now = at(2026, 1, 1, 12, 0)
    soon = now + timedelta(seconds=2)
    sooner = now + timedelta(seconds=1)
    assert wake_at(now, deadlines=(soon, None), poll_s=None, liveness_s=5) == soon
    assert wake_at(now, deadlines=(soon, sooner), poll_s=None, liveness_s=5) == sooner
    polled = wake_at(now, deadlines=(soon,), poll_s=0.05, liveness_s=5)
    assert polled == now + timedelta(seconds=0.05)
    idle = wake_at(now, deadlines=(None, None), poll_s=None, liveness_s=5)
    assert idle == now + timedelta(seconds=5)
