"""Business hours and holidays of a mailbox, and time arithmetic inside them.

A mailbox may have a time zone (an IANA name such as ``Europe/Berlin``), weekly opening
hours (several intervals per day allowed, e.g. Mon-Fri 09:00-12:00 and 13:00-17:00) and
holidays (dates, for this mailbox or for every mailbox). A mailbox without hours is always
open: every function then works on the wall clock.

Every datetime going in or out is naive UTC (what the project stores). Opening hours are
local to the mailbox's zone, so each local day is turned into UTC windows on its own: a
DST change day simply has a window one hour shorter or longer in UTC, and "Friday 16:00 +
2 business hours" lands on Monday 10:00 local whatever the offsets on both days.

The pure core works on a :class:`Schedule`; ``schedule_for(mailbox)`` builds one from the
database. Every public function accepts a ``Schedule``, a mailbox, or ``None`` (always open).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import sqlalchemy as sa

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DAY_ABBREVIATIONS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: "24:00" closes an interval at the end of the day.
END_OF_DAY = "24:00"
#: how far ahead we look for an opening before giving up (a schedule closed for two years
#: because of holidays is a configuration error, not a due time).
MAX_DAYS = 800
_HHMM = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


class BusinessHoursError(ValueError):
    """Hours or a time zone that cannot be used (message shown beside the field)."""


@dataclass(frozen=True)
class Schedule:
    """Weekly opening intervals in a time zone, minus holidays.

    ``hours`` maps a weekday (0 = Monday) to (start, end) pairs of minutes since local
    midnight; end may be 1440 (24:00).
    """

    tz: ZoneInfo
    hours: dict[int, tuple[tuple[int, int], ...]]
    holidays: frozenset[date] = field(default_factory=frozenset)

    def windows(self, start: datetime, end: datetime | None = None):
        """The opening windows as naive-UTC (open, close) pairs, in order, that end after
        ``start`` (and begin before ``end`` when given)."""
        local_day = _to_local(start, self.tz).date() - timedelta(days=1)
        for _ in range(MAX_DAYS):
            if end is not None and _local_midnight_utc(local_day, self.tz) >= end:
                return
            if local_day not in self.holidays:
                for first, last in self.hours.get(local_day.weekday(), ()):
                    opens = _local_to_utc(local_day, first, self.tz)
                    closes = _local_to_utc(local_day, last, self.tz)
                    if closes > start and closes > opens:
                        yield opens, closes
            local_day += timedelta(days=1)
        if end is None:
            raise BusinessHoursError("the business hours never open (check the holidays)")


# -- parsing and formatting ------------------------------------------------------------------
def valid_timezone(name: str) -> ZoneInfo:
    name = (name or "").strip()
    if not name or name not in _zone_names():
        raise BusinessHoursError(f"{name or 'An empty name'!s} is not a time zone name; "
                                 "use a name such as Europe/Berlin or America/New_York.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover - listed yet missing
        raise BusinessHoursError(f"The time zone {name} is not installed.") from exc


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def timezone_names() -> list[str]:
    return sorted(_zone_names())


def parse_minutes(value: str) -> int:
    """``"09:30"`` -> 570; ``"24:00"`` -> 1440."""
    match = _HHMM.match((value or "").strip())
    if not match:
        raise BusinessHoursError(f"{value!r} is not a time; write it as HH:MM, e.g. 09:00.")
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    if minutes > 1440:
        raise BusinessHoursError(f"{value} is past the end of the day (24:00).")
    return minutes


def format_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_day_hours(text: str) -> list[list[str]]:
    """``"09:00-12:00, 13:00-17:00"`` -> ``[["09:00", "12:00"], ["13:00", "17:00"]]``.

    An empty text is a closed day. Intervals must not overlap and must end after they start
    (an interval over midnight is written as two, ``22:00-24:00`` and ``00:00-06:00``).
    """
    intervals = []
    for part in re.split(r"[,;]", text or ""):
        part = part.strip()
        if not part:
            continue
        if "-" not in part:
            raise BusinessHoursError(f"{part!r}: write an interval as 09:00-17:00.")
        first, _, last = part.partition("-")
        start, end = parse_minutes(first), parse_minutes(last)
        if end <= start:
            raise BusinessHoursError(f"{part}: the end must come after the start "
                                     "(over midnight, write two intervals).")
        intervals.append((start, end))
    intervals.sort()
    for (_, end), (start, _) in zip(intervals, intervals[1:]):
        if start < end:
            raise BusinessHoursError("The intervals overlap.")
    return [[format_minutes(s), format_minutes(e)] for s, e in intervals]


def format_day_hours(intervals) -> str:
    return ", ".join(f"{s}-{e}" for s, e in intervals or ())


def stored_hours(by_day: dict[int, list[list[str]]]) -> dict[str, list[list[str]]] | None:
    """The JSON stored on the mailbox (``{"0": [["09:00", "17:00"]], ...}``), or None
    (always open) when no day has hours."""
    cleaned = {str(day): intervals for day, intervals in sorted(by_day.items()) if intervals}
    return cleaned or None


def make_schedule(tz_name: str, hours: dict | None, holidays=()) -> Schedule | None:
    """A Schedule from stored values; None when there are no hours (always open)."""
    if not hours:
        return None
    parsed: dict[int, tuple[tuple[int, int], ...]] = {}
    for day, intervals in hours.items():
        day = int(day)
        if not 0 <= day <= 6:
            raise BusinessHoursError(f"weekday {day} is not 0 (Monday) to 6 (Sunday)")
        parsed[day] = tuple(sorted((parse_minutes(s), parse_minutes(e)) for s, e in intervals))
    if not any(parsed.values()):
        return None
    return Schedule(tz=valid_timezone(tz_name or "UTC"), hours=parsed,
                    holidays=frozenset(holidays))


# -- the database side -----------------------------------------------------------------------
def holidays_for(mailbox) -> set[date]:
    """This mailbox's holidays and the global ones (mailbox_id NULL)."""
    from ..extension import get_state

    state = get_state()
    m = state.models
    where = m.BusinessHoliday.mailbox_id.is_(None)
    if mailbox is not None and mailbox.id is not None:
        where = sa.or_(where, m.BusinessHoliday.mailbox_id == mailbox.id)
    return set(state.db.session.scalars(sa.select(m.BusinessHoliday.day).where(where)))


def schedule_for(mailbox) -> Schedule | None:
    """The mailbox's Schedule, or None when it has no business hours (always open)."""
    if mailbox is None or not mailbox.business_hours:
        return None
    try:
        return make_schedule(mailbox.timezone or "UTC", mailbox.business_hours,
                             holidays_for(mailbox))
    except BusinessHoursError:
        # Stored values are validated by the settings page; a zone removed from the
        # system's tz database must not stop the timers: fall back to the wall clock.
        return None


def _schedule(mailbox_or_schedule) -> Schedule | None:
    if mailbox_or_schedule is None or isinstance(mailbox_or_schedule, Schedule):
        return mailbox_or_schedule
    return schedule_for(mailbox_or_schedule)


# -- arithmetic ------------------------------------------------------------------------------
def _to_local(at: datetime, tz: ZoneInfo) -> datetime:
    return at.replace(tzinfo=timezone.utc).astimezone(tz)


def _local_to_utc(day: date, minutes: int, tz: ZoneInfo) -> datetime:
    """Local ``day`` + ``minutes`` as naive UTC. A time skipped by a DST change is read
    with the offset before the change (zoneinfo's fold=0), i.e. one hour later in wall time."""
    if minutes >= 1440:
        return _local_midnight_utc(day + timedelta(days=1), tz)
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=tz)
    return local.astimezone(timezone.utc).replace(tzinfo=None)


def _local_midnight_utc(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(timezone.utc).replace(tzinfo=None)


def is_open(mailbox, at: datetime) -> bool:
    schedule = _schedule(mailbox)
    if schedule is None:
        return True
    for opens, closes in schedule.windows(at):
        if opens > at:
            return False
        if opens <= at < closes:
            return True
    return False  # pragma: no cover - windows() raises first


def next_opening(mailbox, at: datetime) -> datetime:
    """``at`` itself when open, else the start of the next opening window."""
    schedule = _schedule(mailbox)
    if schedule is None:
        return at
    for opens, _closes in schedule.windows(at):
        return max(opens, at)
    raise BusinessHoursError("no opening")  # pragma: no cover


def add_business_time(mailbox, start: datetime, seconds: float) -> datetime:
    """The moment ``seconds`` of business time after ``start`` (a due time)."""
    schedule = _schedule(mailbox)
    if schedule is None or seconds <= 0:
        return start + timedelta(seconds=max(seconds, 0))
    remaining = timedelta(seconds=seconds)
    for opens, closes in schedule.windows(start):
        begin = max(opens, start)
        available = closes - begin
        if remaining <= available:
            return begin + remaining
        remaining -= available
    raise BusinessHoursError("no opening")  # pragma: no cover


def business_seconds_between(mailbox, start: datetime, end: datetime) -> float:
    """Business time elapsed from ``start`` to ``end`` (0 when end is not after start)."""
    if end <= start:
        return 0.0
    schedule = _schedule(mailbox)
    if schedule is None:
        return (end - start).total_seconds()
    total = timedelta()
    for opens, closes in schedule.windows(start, end):
        begin, finish = max(opens, start), min(closes, end)
        if finish > begin:
            total += finish - begin
    return total.total_seconds()


def describe(schedule: Schedule | None) -> str:
    """One line for the settings list: "Mon-Fri 09:00-17:00 (Europe/Berlin)"."""
    if schedule is None:
        return "Always open"
    parts = []
    for day in range(7):
        intervals = schedule.hours.get(day)
        if intervals:
            text = ", ".join(f"{format_minutes(s)}-{format_minutes(e)}" for s, e in intervals)
            parts.append(f"{DAY_ABBREVIATIONS[day].title()} {text}")
    return f"{'; '.join(parts)} ({schedule.tz.key})"
