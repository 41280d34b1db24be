"""When jobs fire: pure functions over croniter and interval arithmetic, no I/O.

Every instant is an aware UTC datetime, the key a run is recorded under. Cron
expressions are read in one time zone (``CRON_TZ``); intervals are counted from
the Unix epoch so that every replica computes the same instants.

Daylight-saving rule (as classic cron): a job whose hour field is fixed
(``30 2 * * *``) runs once when the clock falls back, at the first of the two
wall-clock times, and at the first valid time when the clock springs forward;
a job whose hour field is a wildcard (``*/15 * * * *``, ``0 */2 * * *``) runs at
every real instant.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from app.errors import InvalidSchedule, shown

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)  # any fixed date: cron repeats within 400 years
MAX_INTERVAL_S = 366 * 86400
_INTERVAL = re.compile(r"^every\s+([0-9]+)\s*(s|m|h|d)$", re.IGNORECASE | re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,6}", re.ASCII)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Each cron field: its name, how many values it has, how often cron then fires a
# step too large for it, and the interval unit that does what that step seems to ask.
_FIELDS = (
    ("minute", 60, "an hour", "m"),
    ("hour", 24, "a day", "h"),
    ("day-of-month", 31, "a month", "d"),
    ("month", 12, "a year", None),
    ("day-of-week", 7, "a week", None),
)
_SECOND_FIELD = ("second", 60, "a minute", "s")

_HELP = (
    "use 5-field cron ('*/5 * * * *'), 6-field cron with leading seconds "
    "('*/10 * * * * *'), a macro ('@hourly') or an interval ('every 30s', 'every 5m')"
)


class Schedule(Protocol):
    """The instants a job fires at."""

    @property
    def expression(self) -> str:
        """The schedule as written (macros expanded)."""
        ...

    def next_after(self, moment: datetime) -> datetime:
        """Return the first instant strictly after `moment`."""
        ...

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """Return the last instant at or before `moment`."""
        ...

    def walk(self, moment: datetime, *, forward: bool) -> Iterator[datetime]:
        """The instants strictly after `moment` (forward) or at or before it (backward),
        nearest first, without end: for listing many at once."""
        ...


@dataclass(frozen=True)
class IntervalSchedule:
    """Every `period_s` seconds, counted from the Unix epoch."""

    expression: str
    period_s: int

    def next_after(self, moment: datetime) -> datetime:
        """Return the first multiple of the period strictly after `moment`."""
        return self.latest_at_or_before(moment) + timedelta(seconds=self.period_s)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """Return the last multiple of the period at or before `moment`."""
        elapsed = moment - _EPOCH
        whole = int(elapsed.total_seconds() // self.period_s) * self.period_s
        return _EPOCH + timedelta(seconds=whole)

    def walk(self, moment: datetime, *, forward: bool) -> Iterator[datetime]:
        """See `Schedule.walk`."""
        step = timedelta(seconds=self.period_s if forward else -self.period_s)
        instant = self.next_after(moment) if forward else self.latest_at_or_before(moment)
        while True:
            yield instant
            instant += step


# Parsing an expression is most of what a croniter costs, and a tick asks each
# job's schedule several questions; croniters keep state, so one per thread.
_PARSED = threading.local()


@dataclass(frozen=True)
class CronSchedule:
    """A cron expression read in one time zone."""

    expression: str
    zone: ZoneInfo
    has_seconds: bool
    fixed_hour: bool

    def next_after(self, moment: datetime) -> datetime:
        """Return the first instant strictly after `moment`."""
        cron = self._iterator(moment)
        while True:
            candidate = _as_utc(cron.get_next(datetime))
            if not self._repeated_wall_time(candidate):
                return candidate

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """Return the last instant at or before `moment`."""
        # get_prev is strict; starting a microsecond later makes it inclusive.
        cron = self._iterator(moment + timedelta(microseconds=1))
        while True:
            candidate = _as_utc(cron.get_prev(datetime))
            if not self._repeated_wall_time(candidate):
                return candidate

    def walk(self, moment: datetime, *, forward: bool) -> Iterator[datetime]:
        """See `Schedule.walk`: one croniter of its own, moved step by step (many times
        cheaper than asking `next_after` each time)."""
        start = moment if forward else moment + timedelta(microseconds=1)
        cron = croniter(
            self.expression, start.astimezone(self.zone), second_at_beginning=self.has_seconds
        )
        step = cron.get_next if forward else cron.get_prev
        while True:
            candidate = _as_utc(step(datetime))
            if not self._repeated_wall_time(candidate):
                yield candidate

    def _iterator(self, moment: datetime) -> croniter:
        """A croniter at `moment`: parsed once per thread, then only moved."""
        start = moment.astimezone(self.zone)
        parsed: dict[tuple[str, bool], croniter] = _PARSED.__dict__.setdefault("by_text", {})
        cron = parsed.get((self.expression, self.has_seconds))
        if cron is None:
            cron = croniter(self.expression, start, second_at_beginning=self.has_seconds)
            parsed[(self.expression, self.has_seconds)] = cron
        else:
            cron.set_current(start, force=True)
        return cron

    def _repeated_wall_time(self, instant: datetime) -> bool:
        """True for the second pass through a fall-back hour, which fixed-hour jobs skip."""
        if not self.fixed_hour:
            return False
        local = instant.astimezone(self.zone)
        return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def _as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def parse_schedule(expression: str, *, zone: ZoneInfo, source: str) -> Schedule:
    """Parse a schedule; `source` names where it came from for the error message."""
    text = " ".join(expression.split())
    interval = _INTERVAL.match(text)
    if interval:
        digits, unit = interval.group(1), interval.group(2).lower()
        # A count with more digits than a year has seconds is too long whatever it is.
        count = int(digits) if len(digits) <= 9 else MAX_INTERVAL_S + 1
        if count <= 0:
            raise InvalidSchedule(f"{source}: {shown(expression)} has a zero interval; {_HELP}")
        if count * _UNIT_S[unit] > MAX_INTERVAL_S:
            raise InvalidSchedule(
                f"{source}: {shown(expression)} is longer than a year; "
                "use cron ('0 0 1 1 *') instead"
            )
        return IntervalSchedule(expression=text, period_s=count * _UNIT_S[unit])
    fields = _MACROS.get(text.lower(), text).split(" ")
    cron_text = " ".join(fields)
    if len(fields) not in (5, 6) or not croniter.is_valid(
        cron_text, second_at_beginning=len(fields) == 6
    ):
        raise InvalidSchedule(f"{source}: {shown(expression)} is not a valid schedule; {_HELP}")
    _refuse_oversized_steps(fields, expression, source)
    hour_field = fields[2] if len(fields) == 6 else fields[1]
    schedule = CronSchedule(
        expression=cron_text,
        zone=zone,
        has_seconds=len(fields) == 6,
        fixed_hour=not hour_field.startswith("*"),
    )
    try:
        schedule.next_after(_PROBE)
    except CroniterBadDateError:
        raise InvalidSchedule(
            f"{source}: {shown(expression)} never fires (no calendar date matches it); {_HELP}"
        ) from None
    return schedule


def _refuse_oversized_steps(fields: list[str], expression: str, source: str) -> None:
    """Refuse `*/90` in a 60-value field: cron fires it once an hour, not every 90 minutes."""
    described = (_SECOND_FIELD, *_FIELDS) if len(fields) == 6 else _FIELDS
    for position, (value, (name, size, cycle, unit)) in enumerate(
        zip(fields, described, strict=True)
    ):
        for part in value.split(","):
            _, slash, step = part.partition("/")
            if not slash or not _DIGITS.fullmatch(step) or int(step) <= size:
                continue
            raise InvalidSchedule(
                f"{source}: {shown(expression)} steps by {step} in the {name} field, which has "
                f"{size} values: cron fires it once {cycle}, not every {step}; "
                + _interval_instead(fields, position, int(step), unit)
            )


def _interval_instead(fields: list[str], position: int, step: int, unit: str | None) -> str:
    """The interval a too-large step seems to mean, when one interval can say it: the
    finer fields fixed (`0 */30 * * *`), the coarser ones `*`, and within a year."""
    finer, coarser = fields[:position], fields[position + 1 :]
    if (
        unit is not None
        and all(field.isdigit() for field in finer)
        and all(field == "*" for field in coarser)
        and step * _UNIT_S[unit] <= MAX_INTERVAL_S
    ):
        return f"for that, write 'every {step}{unit}'"
    return _HELP
