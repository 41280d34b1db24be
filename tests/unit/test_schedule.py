import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.core.schedule import CronSchedule, IntervalSchedule, parse_schedule
from app.errors import InvalidSchedule

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def instants(schedule, start: datetime, count: int) -> list[datetime]:
    found, moment = [], start
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(moment)
    return found


def test_five_field_cron_fires_on_the_minute():
    schedule = parse_schedule("*/15 * * * *", zone=UTC_ZONE, source="test")
    assert isinstance(schedule, CronSchedule)
    assert schedule.next_after(at(2026, 1, 1, 12, 0)) == at(2026, 1, 1, 12, 15)
    assert schedule.next_after(at(2026, 1, 1, 12, 7, 30)) == at(2026, 1, 1, 12, 15)


def test_six_field_cron_has_leading_seconds():
    schedule = parse_schedule("*/10 * * * * *", zone=UTC_ZONE, source="test")
    assert instants(schedule, at(2026, 1, 1, 12, 0, 0), 3) == [
        at(2026, 1, 1, 12, 0, 10),
        at(2026, 1, 1, 12, 0, 20),
        at(2026, 1, 1, 12, 0, 30),
    ]


def test_latest_at_or_before_includes_an_exact_instant():
    schedule = parse_schedule("0 * * * *", zone=UTC_ZONE, source="test")
    assert schedule.latest_at_or_before(at(2026, 1, 1, 12, 0)) == at(2026, 1, 1, 12, 0)
    assert schedule.latest_at_or_before(at(2026, 1, 1, 12, 59, 59)) == at(2026, 1, 1, 12, 0)


def test_macros_expand_to_cron():
    schedule = parse_schedule("@hourly", zone=UTC_ZONE, source="test")
    assert schedule.next_after(at(2026, 1, 1, 12, 30)) == at(2026, 1, 1, 13, 0)


@pytest.mark.parametrize(
    ("text", "period_s"), [("every 30s", 30), ("every 5m", 300), ("EVERY 2h", 7200)]
)
def test_intervals_are_aligned_to_the_epoch(text: str, period_s: int):
    schedule = parse_schedule(text, zone=BERLIN, source="test")
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.period_s == period_s
    following = schedule.next_after(at(2026, 1, 1, 12, 0, 1))
    assert following.timestamp() % period_s == 0
    assert timedelta(0) < following - at(2026, 1, 1, 12, 0, 1) <= timedelta(seconds=period_s)


def test_interval_latest_at_or_before_is_exact_on_a_boundary():
    schedule = parse_schedule("every 30s", zone=UTC_ZONE, source="test")
    assert schedule.latest_at_or_before(at(2026, 1, 1, 12, 0, 30)) == at(2026, 1, 1, 12, 0, 30)
    assert schedule.next_after(at(2026, 1, 1, 12, 0, 30)) == at(2026, 1, 1, 12, 1, 0)


def test_cron_is_read_in_its_zone():
    schedule = parse_schedule("0 9 * * *", zone=BERLIN, source="test")
    assert schedule.next_after(at(2026, 1, 1, 0, 0)) == at(2026, 1, 1, 8, 0)  # UTC+1 in winter


def test_fixed_time_job_runs_once_on_the_fall_back_day():
    schedule = parse_schedule("30 2 * * *", zone=BERLIN, source="test")
    runs = instants(schedule, at(2026, 10, 24, 12, 0), 3)
    # 02:30 happens twice on 2026-10-25 in Berlin; only the first (00:30 UTC) fires.
    assert runs == [at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30), at(2026, 10, 27, 1, 30)]


def test_fixed_time_job_runs_at_the_first_valid_time_on_the_spring_forward_day():
    schedule = parse_schedule("30 2 * * *", zone=BERLIN, source="test")
    runs = instants(schedule, at(2026, 3, 28, 12, 0), 2)
    assert runs == [at(2026, 3, 29, 1, 0), at(2026, 3, 30, 0, 30)]  # 03:00 CEST, then 02:30


def test_wildcard_hour_job_runs_at_every_real_instant_through_fall_back():
    schedule = parse_schedule("*/15 * * * *", zone=BERLIN, source="test")
    runs = instants(schedule, at(2026, 10, 24, 23, 50), 12)
    assert runs == [at(2026, 10, 25, 0, 0) + timedelta(minutes=15 * i) for i in range(12)]


def test_latest_at_or_before_skips_the_repeated_hour_too():
    schedule = parse_schedule("30 2 * * *", zone=BERLIN, source="test")
    assert schedule.latest_at_or_before(at(2026, 10, 25, 1, 45)) == at(2026, 10, 25, 0, 30)


@pytest.mark.parametrize(
    "text",
    ["61 * * * *", "* * * *", "* * * * * * *", "every 0s", "every 5 weeks", "hourly", ""],
)
def test_invalid_schedules_name_their_source(text: str):
    with pytest.raises(InvalidSchedule) as caught:
        parse_schedule(text, zone=UTC_ZONE, source="SYNC_SCHEDULE")
    assert "SYNC_SCHEDULE" in caught.value.message
    assert "every 30s" in caught.value.message


@pytest.mark.parametrize(
    ("text", "advice"),
    [
        ("*/90 * * * *", "once an hour, not every 90; for that, write 'every 90m'"),
        ("0 */30 * * *", "once a day, not every 30; for that, write 'every 30h'"),
        ("0 0 1,*/45 * *", "once a month, not every 45; for that, write 'every 45d'"),
        ("*/61 * * * * *", "once a minute, not every 61; for that, write 'every 61s'"),
        ("0 0 1 */13 *", "once a year, not every 13; use 5-field cron"),
        ("*/90 9-17 * * 1-5", "once an hour, not every 90; use 5-field cron"),
        ("*/5 */30 * * *", "once a day, not every 30; use 5-field cron"),
        ("0 0 */400 * *", "once a month, not every 400; use 5-field cron"),
    ],
)
def test_a_step_larger_than_its_field_is_refused(text: str, advice: str):
    with pytest.raises(InvalidSchedule) as caught:
        parse_schedule(text, zone=UTC_ZONE, source="SYNC_SCHEDULE")
    assert caught.value.message.startswith("SYNC_SCHEDULE: ")
    assert advice in caught.value.message


@pytest.mark.parametrize("text", ["*/60 * * * *", "*/59 * * * *", "0 9 * * 1-5/2", "0 0 */31 * *"])
def test_a_step_within_its_field_is_cron_as_usual(text: str):
    parse_schedule(text, zone=UTC_ZONE, source="test")


def test_schedules_sharing_an_expression_answer_independently():
    """The parsed expression is reused; zones and moments are not."""
    in_utc = parse_schedule("0 9 * * *", zone=UTC_ZONE, source="test")
    in_berlin = parse_schedule("0 9 * * *", zone=BERLIN, source="test")
    moment = at(2026, 7, 1, 12, 0)
    assert in_utc.next_after(moment) == at(2026, 7, 2, 9, 0)
    assert in_berlin.next_after(moment) == at(2026, 7, 2, 7, 0)
    assert in_utc.latest_at_or_before(moment) == at(2026, 7, 1, 9, 0)
    assert in_berlin.latest_at_or_before(at(2026, 1, 5, 12, 0)) == at(2026, 1, 5, 8, 0)
    assert in_utc.next_after(at(2025, 12, 31, 23, 0)) == at(2026, 1, 1, 9, 0)


def test_an_interval_with_thousands_of_digits_is_refused_clearly():
    with pytest.raises(InvalidSchedule, match="is longer than a year") as raised:
        parse_schedule("every " + "9" * 5000 + "s", zone=ZoneInfo("UTC"), source="job 'x'")
    assert len(raised.value.message) < 300


def test_interval_digits_must_be_ascii():
    with pytest.raises(InvalidSchedule, match="is not a valid schedule"):
        parse_schedule("every \uff15s", zone=ZoneInfo("UTC"), source="job 'x'")


@pytest.mark.parametrize(
    ("expression", "zone"),
    [
        ("* * * * *", "UTC"),
        ("30 2 * * *", "Europe/Berlin"),
        ("*/15 * * * *", "America/New_York"),
        ("*/10 * * * * *", "UTC"),
        ("every 90s", "UTC"),
    ],
)
def test_walking_a_schedule_gives_the_instants_one_at_a_time_would(expression: str, zone: str):
    """`walk` lists many instants with one croniter; it must agree with next_after and
    latest_at_or_before, DST nights included."""
    schedule = parse_schedule(expression, zone=ZoneInfo(zone), source="test")
    start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # the night before Europe falls back
    walked = list(itertools.islice(schedule.walk(start, forward=True), 400))
    stepped, moment = [], start
    for _ in range(400):
        moment = schedule.next_after(moment)
        stepped.append(moment)
    assert walked == stepped
    end = walked[-1]
    backward = list(itertools.islice(schedule.walk(end, forward=False), 400))
    assert backward == walked[::-1]
