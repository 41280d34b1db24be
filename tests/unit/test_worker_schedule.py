"""The worker's pure scheduling: which instants are due and what comes next."""

from datetime import UTC, datetime

from app.config import Settings
from app.job import Job
from app.registry import JobRegistry, configure
from app.runtime.worker import Worker


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def worker_for(*jobs: Job, environ: dict[str, str] | None = None) -> Worker:
    settings = Settings.from_env(environ or {})
    configured = configure(JobRegistry(list(jobs)), settings)
    return Worker(database=None, jobs=configured, settings=settings, worker_id="test:1")  # type: ignore[arg-type]


def job(name: str, schedule: str, **options) -> Job:
    return Job(name=name, body=lambda ctx: None, schedule=schedule, **options)


def test_due_coalesces_to_the_latest_instant_after_the_cursor():
    worker = worker_for(job("a", "* * * * *"), job("b", "0 * * * *"))
    due = worker.due(after=at(2026, 1, 1, 12, 0, 30), now=at(2026, 1, 1, 12, 3, 5))
    assert [(d.job.name, d.scheduled_for, d.expires_at) for d in due] == [
        ("a", at(2026, 1, 1, 12, 3), at(2026, 1, 1, 12, 4)),
    ]


def test_due_without_cursor_takes_each_latest_instant():
    worker = worker_for(job("a", "* * * * *"), job("b", "0 * * * *"))
    due = worker.due(after=None, now=at(2026, 1, 1, 12, 3, 5))
    assert [(d.job.name, d.scheduled_for) for d in due] == [
        ("a", at(2026, 1, 1, 12, 3)),
        ("b", at(2026, 1, 1, 12, 0)),
    ]


def test_disabled_jobs_are_never_due():
    worker = worker_for(job("a", "* * * * *"), environ={"A_ENABLED": "false"})
    assert worker.due(after=None, now=at(2026, 1, 1, 12, 0)) == []
    assert worker.next_tick(at(2026, 1, 1, 12, 0)) is None


def test_next_tick_is_the_earliest_instant_of_any_job():
    worker = worker_for(job("a", "*/5 * * * *"), job("b", "every 2m"))
    assert worker.next_tick(at(2026, 1, 1, 12, 0)) == at(2026, 1, 1, 12, 2)


def test_upstreams_count_only_when_enabled_and_due_at_the_same_instant():
    up_hourly = job("up-hourly", "0 * * * *")
    up_minutely = job("up-minutely", "* * * * *")
    up_off = job("up-off", "* * * * *")
    down = job("down", "* * * * *", run_after=("up-hourly", "up-minutely", "up-off"))
    worker = worker_for(up_hourly, up_minutely, up_off, down, environ={"UP_OFF_ENABLED": "0"})
    [on_the_hour] = [
        d for d in worker.due(after=None, now=at(2026, 1, 1, 12, 0)) if d.job.name == "down"
    ]
    [mid_hour] = [
        d for d in worker.due(after=None, now=at(2026, 1, 1, 12, 7)) if d.job.name == "down"
    ]
    assert worker.upstreams(on_the_hour) == ["up-hourly", "up-minutely"]
    assert worker.upstreams(mid_hour) == ["up-minutely"]
