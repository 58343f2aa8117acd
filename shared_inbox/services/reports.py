"""Reports: what a team lead wants to know about a date range, per mailbox, agent and tag.

Definitions (the tests check them against figures worked out by hand):

- The range is whole days, ``start`` to ``end`` inclusive, in the report's time zone (by
  default the mailboxes' zone when they share one, else UTC); the per-day chart and the
  busiest-hours heat map use local days and hours too. Spam and tickets merged into another
  one are left out everywhere. Timestamps in the CSV export are UTC.
- **New**: tickets created in the range. **Closed**: tickets whose ``closed_at`` is in the
  range (a reopened ticket is no longer closed).
- **Replies sent**: replies written by an agent (outbound messages with an author; automatic
  replies and forwards are not replies) in the range, counted for their author.
- **First response time**: for tickets created in the range and answered, from creation to
  the first reply. **Resolution time**: for tickets closed in the range, from creation to
  closing. Both count only business hours when the ticket's mailbox has them
  (``services.business_hours``), else the wall clock. Median and 90th percentile use linear
  interpolation between the two nearest values (the median of 1, 2, 3, 10 is 2.5).
- **First-contact resolution**: of the tickets closed in the range, the share closed with
  exactly one agent reply.
- **SLA attainment**: for tickets created in the range, each due time (first response,
  resolution) that is decided counts once: met when the answer / closing came by the due
  time, missed when it came later or has not come and the due time has passed; targets still
  running are not counted.
- **Waiting now**: open, not snoozed tickets whose customer wrote last (not date-bound).
- **CSAT**: great ratings / all ratings given (or changed) in the range.

Ticket figures are grouped by the ticket's assignee ("Unassigned" when none), replies by
their author. Each figure comes from one narrow query read as plain tuples: the tickets
created or closed in the range (with the SLA outcome of each, computed by the database),
agent replies in the range, one-reply tickets, tag pairs, waiting tickets, ratings. The
tickets are split by (mailbox, assignee) and each group, then each tag, is summed column by
column (``_fill``); percentiles sort each list once (mostly merging sorted runs).

Durations are stored on the ticket by the report that first works them out
(``store_durations``, called by the views, which commit) and read as they are by the next
one while they still fit: same schedule (``schedule_basis``: a digest of zone, hours and
holidays, or ``'wall'``), same ``first_response_at`` and ``closed_at`` (copied beside them).
Nothing has to invalidate them: changed hours or holidays, a reopened or re-closed ticket,
or a ticket moved to a mailbox with other hours simply no longer fit, and are worked out
again (wall-clock seconds by the database; business seconds in Python with
``BusinessTimeline``, which SQL cannot do portably). The cyclic garbage collector is paused
while a report runs. Speed: ``benchmarks/reports.py``.
"""
from __future__ import annotations

import gc
import math
from bisect import bisect_right
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from itertools import compress, islice, repeat
from operator import itemgetter
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ..extension import get_state
from ..models import utcnow

RATINGS = ("great", "okay", "bad")
RATING_LABELS = {"great": "Great", "okay": "Okay", "bad": "Not good"}
MAX_DAYS = 731
CSV_PAGE = 2000  # tickets read per query by the streamed tickets CSV
UNASSIGNED = "Unassigned"


# -- small maths -----------------------------------------------------------------------------
def percentile(values: list[float], q: float, *, ordered: bool = False) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty.
    ``ordered``: the values are sorted already."""
    if not values:
        return None
    ordered = values if ordered else sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def format_duration(seconds: float | None) -> str:
    """``5400`` -> ``'1 h 30 min'``; ``None`` -> ``'–'``."""
    if seconds is None:
        return "–"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# -- results ---------------------------------------------------------------------------------
@dataclass
class Figures:
    """The figures of one group (all tickets, one mailbox, one agent or one tag)."""

    label: str
    key: object = None
    new: int = 0
    closed: int = 0
    replies: int = 0
    waiting: int = 0
    first_response: list = field(default_factory=list)
    resolution: list = field(default_factory=list)
    fcr_one_reply: int = 0
    sla_met: int = 0
    sla_decided: int = 0
    ratings: Counter = field(default_factory=Counter)
    _sorted: dict = field(default_factory=dict, repr=False, compare=False)

    def _percentile(self, name: str, q: float):
        """Sorted once per list (the page asks for the median and the 90th of each)."""
        values = getattr(self, name)
        cached = self._sorted.get(name)
        if cached is None or len(cached) != len(values):
            cached = self._sorted[name] = sorted(values)
        return percentile(cached, q, ordered=True)

    @property
    def first_response_median(self):
        return self._percentile("first_response", 0.5)

    @property
    def first_response_p90(self):
        return self._percentile("first_response", 0.9)

    @property
    def resolution_median(self):
        return self._percentile("resolution", 0.5)

    @property
    def resolution_p90(self):
        return self._percentile("resolution", 0.9)

    @property
    def fcr_rate(self):
        return _rate(self.fcr_one_reply, self.closed)

    @property
    def sla_rate(self):
        return _rate(self.sla_met, self.sla_decided)

    @property
    def rating_count(self) -> int:
        return sum(self.ratings.values())

    @property
    def csat(self):
        return _rate(self.ratings["great"], self.rating_count)

    def add(self, other: "Figures") -> None:
        """Add another group's figures to these (used to sum buckets)."""
        for name in ("new", "closed", "replies", "waiting", "fcr_one_reply", "sla_met",
                     "sla_decided"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first_response.extend(other.first_response)
        self.resolution.extend(other.resolution)
        self.ratings.update(other.ratings)

    def is_empty(self) -> bool:
        return not (self.new or self.closed or self.replies or self.waiting or self.rating_count)


@dataclass
class DayPoint:
    day: date
    new: int = 0
    closed: int = 0
    first_response: list = field(default_factory=list)

    @property
    def first_response_median(self):
        return percentile(self.first_response, 0.5)


@dataclass
class Report:
    start: date
    end: date
    total: Figures
    by_mailbox: list
    by_agent: list
    by_tag: list
    days: list
    #: heatmap[weekday][hour] = new tickets (weekday 0 = Monday, local hours of ``tz``)
    heatmap: list
    business_hours: bool = False
    tz: str = "UTC"
    tickets: list = field(default_factory=list)
    #: durations this report worked out that were not stored yet (see :func:`store_durations`)
    fills: list = field(default_factory=list, repr=False)


class ReportError(ValueError):
    """A date range that cannot be reported on (shown beside the field)."""


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The naive-UTC moment a local day begins."""
    return datetime.combine(day, time(), tzinfo=tz).astimezone(timezone.utc).replace(tzinfo=None)


def day_bounds(start: date, end: date, tz: ZoneInfo | None = None) -> tuple[datetime, datetime]:
    """Naive-UTC [first moment, moment after the last day) of local days in ``tz``."""
    tz = tz or ZoneInfo("UTC")
    return local_midnight(start, tz), local_midnight(end + timedelta(days=1), tz)


def default_timezone(mailbox_ids=None) -> str:
    """The zone of the reported mailboxes when they all share one, else UTC."""
    state = get_state()
    mb = state.models.Mailbox
    stmt = sa.select(mb.timezone).distinct()
    if mailbox_ids is not None:
        stmt = stmt.where(mb.id.in_(list(mailbox_ids)))
    zones = set(state.db.session.scalars(stmt))
    if len(zones) != 1:
        return "UTC"
    try:
        return valid_zone(zones.pop())
    except ReportError:  # a zone no longer installed: report in UTC rather than fail
        return "UTC"


def valid_zone(name: str) -> str:
    """``name`` when it is an installed IANA zone; ReportError (shown beside the field)."""
    from .business_hours import BusinessHoursError, valid_timezone

    try:
        return valid_timezone(name).key
    except BusinessHoursError as exc:
        raise ReportError(str(exc)) from exc


def check_range(start: date, end: date) -> None:
    if end < start:
        raise ReportError("The end date is before the start date.")
    if (end - start).days >= MAX_DAYS:
        raise ReportError(f"Choose at most {MAX_DAYS} days.")


# -- business time ---------------------------------------------------------------------------
class BusinessTimeline:
    """Business seconds of one schedule for many durations at once.

    Times are seconds since the Unix epoch (UTC). ``at(t)`` is the business time from the
    first local day of the timeline to ``t``; ``seconds(a, b)`` is ``at(b) - at(a)``. The local
    midnights, each day's opening windows and the running total before each day are worked
    out once for the span of days needed (holidays and DST changes included, as in
    ``business_hours``), so each duration costs two binary searches and a few comparisons
    instead of a walk over the windows. Results equal ``business_seconds_between`` (a test
    compares them).
    """

    def __init__(self, schedule):
        self.schedule = schedule
        self.first_day: date | None = None
        self.midnights: list[float] = []  # epoch of each local midnight, one more than days
        self.before: list[float] = []  # business seconds before each day
        self.windows: list[tuple] = []  # per day: ((opens, closes), ...) as epochs

    def _build(self, first: date, last: date) -> None:
        from . import business_hours as bh

        tz, hours, holidays = self.schedule.tz, self.schedule.hours, self.schedule.holidays
        midnights, before, windows, total = [], [], [], 0.0
        day = first
        while day <= last + timedelta(days=1):
            midnights.append(_epoch(bh._local_midnight_utc(day, tz)))
            if day <= last:
                found = []
                if day not in holidays:
                    for opens, closes in hours.get(day.weekday(), ()):
                        o = _epoch(bh._local_to_utc(day, opens, tz))
                        c = _epoch(bh._local_to_utc(day, closes, tz))
                        if c > o:
                            found.append((o, c))
                before.append(total)
                windows.append(tuple(found))
                total += sum(c - o for o, c in found)
            day += timedelta(days=1)
        self.first_day, self.midnights, self.before, self.windows = \
            first, midnights, before, windows

    def cover(self, start: datetime, end: datetime) -> None:
        """Work out the days from ``start`` to ``end`` (naive UTC) at once."""
        self._build((start - timedelta(days=1)).date(), (end + timedelta(days=1)).date())

    def _cover(self, moment: float) -> None:
        """Widen the span of days to include ``moment`` (rare: a margin is added)."""
        day = (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=moment)) \
            .astimezone(self.schedule.tz).date()
        if self.first_day is None:
            first, last = day - timedelta(days=7), day + timedelta(days=7)
        else:
            last_day = self.first_day + timedelta(days=len(self.windows) - 1)
            margin = timedelta(days=max(31, len(self.windows)))
            first = min(self.first_day, day - margin)
            last = max(last_day, day + margin)
        self._build(first, last)

    def at(self, moment: float) -> float:
        """Business seconds from the first day to ``moment``; only differences between two
        calls with no widening in between mean anything (``seconds`` sees to that)."""
        midnights = self.midnights
        if not midnights or not midnights[0] <= moment < midnights[-1]:
            self._cover(moment)
            midnights = self.midnights
        i = bisect_right(midnights, moment) - 1
        total = self.before[i]
        for opens, closes in self.windows[i]:
            if moment >= closes:
                total += closes - opens
            elif moment > opens:
                total += moment - opens
        return total

    def durations(self, start: float, first: float | None, closed: float | None):
        """(business seconds to ``first``, to ``closed``) from ``start``, all whole epoch
        seconds (so no rounding is needed); None stays None."""
        midnights = self.midnights
        for moment in (start, first, closed):  # widen first: all count from the same day
            if moment is not None and not midnights[0] <= moment < midnights[-1]:
                self._cover(moment)
                midnights = self.midnights
        at = self.at
        origin = at(start)
        if first is not None:
            first = at(first) - origin if first > start else 0.0
        if closed is not None:
            closed = at(closed) - origin if closed > start else 0.0
        return first, closed

    def seconds(self, start, end) -> float:
        """Business seconds from ``start`` to ``end`` (epoch seconds or naive-UTC datetimes)."""
        if isinstance(start, datetime):
            start, end = _epoch(start), _epoch(end)
        if end <= start:
            return 0.0
        # Widen first: both ends must count from the same day.
        if not self.midnights or not self.midnights[0] <= start < self.midnights[-1]:
            self._cover(start)
        if not self.midnights[0] <= end < self.midnights[-1]:
            self._cover(end)
        return round(self.at(end) - self.at(start), 3)


_EPOCH = datetime(1970, 1, 1)


def _epoch(moment: datetime) -> float:
    return (moment - _EPOCH).total_seconds()


WALL_CLOCK = "wall"


def schedule_basis(schedule) -> str:
    """What a stored duration was counted with: ``'wall'`` (no business hours) or a digest of
    the zone, the weekly hours and every holiday. A change to any of them gives another
    basis, so durations stored under the old one are no longer used (nothing to invalidate).
    """
    if schedule is None:
        return WALL_CLOCK
    import hashlib

    text = repr((schedule.tz.key, sorted((day, tuple(w)) for day, w in schedule.hours.items()),
                 sorted(d.isoformat() for d in schedule.holidays)))
    return "bh:" + hashlib.sha1(text.encode()).hexdigest()[:32]


def _timelines(mailboxes: dict) -> tuple[dict, dict]:
    """({mailbox id: BusinessTimeline} for the mailboxes that have business hours,
    {mailbox id: basis} for those, see :func:`schedule_basis`)."""
    from . import business_hours as bh

    found, bases = {}, {}
    for mailbox_id, mailbox in mailboxes.items():
        schedule = bh.schedule_for(mailbox)
        if schedule is not None:
            found[mailbox_id] = BusinessTimeline(schedule)
            bases[mailbox_id] = schedule_basis(schedule)
    return found, bases


# -- the report ------------------------------------------------------------------------------
class seconds_between(FunctionElement):
    """Seconds from the first timestamp to the second, computed by the database."""

    type = sa.Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between)
def _seconds_between_default(element, compiler, **kw):
    start, end = list(element.clauses)
    return (f"CAST(EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - "
            f"{compiler.process(start, **kw)})) AS DOUBLE PRECISION)")


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element, compiler, **kw):
    # julianday() arithmetic is a float of days; rounded to the millisecond it came from.
    start, end = list(element.clauses)
    return (f"round((julianday({compiler.process(end, **kw)}) - "
            f"julianday({compiler.process(start, **kw)})) * 86400.0, 3)")


class epoch_seconds(FunctionElement):
    """Whole seconds since the Unix epoch of a naive-UTC timestamp, computed by the database
    (whole, so that business durations are exact sums of window lengths)."""

    type = sa.Float()
    inherit_cache = True
    name = "epoch_seconds"


@compiles(epoch_seconds)
def _epoch_seconds_default(element, compiler, **kw):
    (value,) = list(element.clauses)
    return f"CAST(round(EXTRACT(EPOCH FROM {compiler.process(value, **kw)})) AS DOUBLE PRECISION)"


@compiles(epoch_seconds, "sqlite")
def _epoch_seconds_sqlite(element, compiler, **kw):
    (value,) = list(element.clauses)
    return f"round((julianday({compiler.process(value, **kw)}) - 2440587.5) * 86400.0)"


class unindexed(FunctionElement):
    """The column itself, written so that SQLite's planner will not use its index (``+col``):
    reading the whole table in order is faster than an index walk plus a row lookup per
    ticket when most tickets are wanted."""

    inherit_cache = True
    name = "unindexed"

    @property
    def type(self):
        return list(self.clauses)[0].type


@compiles(unindexed)
def _unindexed_default(element, compiler, **kw):
    (value,) = list(element.clauses)
    return compiler.process(value, **kw)


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element, compiler, **kw):
    (value,) = list(element.clauses)
    return f"+{compiler.process(value, **kw)}"


class hour_key(FunctionElement):
    """``'YYYY-MM-DD HH'`` of a timestamp, as text (groups by day and hour cheaply)."""

    type = sa.String()
    inherit_cache = True
    name = "hour_key"


@compiles(hour_key)
def _hour_key_default(element, compiler, **kw):
    (value,) = list(element.clauses)
    return f"to_char({compiler.process(value, **kw)}, 'YYYY-MM-DD HH24')"


@compiles(hour_key, "sqlite")
def _hour_key_sqlite(element, compiler, **kw):
    # SQLAlchemy stores SQLite timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text: the first 13
    # characters are the key, far cheaper than strftime() over 100k rows.
    (value,) = list(element.clauses)
    return f"substr({compiler.process(value, **kw)}, 1, 13)"


@contextmanager
def _cyclic_gc_paused():
    """Pause the cyclic garbage collector while a report runs.

    A one-year report allocates several hundred thousand tuples, lists and floats, none of
    them in reference cycles; every few thousand allocations the collector walks the young
    objects and now and then all of them, which cost a fifth of the report's time at 100k
    tickets. Reference counting still frees everything; the collector is switched back on
    (if it was on) when the report is done, even on an error.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def compute_report(start: date, end: date, *, mailbox_ids=None, agent_id=None,
                   now: datetime | None = None, with_tickets: bool = False,
                   tz: str | None = None) -> Report:
    """Figures for ``start``..``end`` (inclusive local days of ``tz``, an IANA name; None:
    :func:`default_timezone`).

    ``mailbox_ids``: restrict to these mailboxes (None: all). ``agent_id``: only this
    agent's tickets and replies (what an agent who is not an admin sees).
    ``with_tickets`` also returns the underlying ticket rows (for the CSV export).
    """
    with _cyclic_gc_paused():
        return _compute_report(start, end, mailbox_ids=mailbox_ids, agent_id=agent_id,
                               now=now, with_tickets=with_tickets, tz=tz)


def _compute_report(start: date, end: date, *, mailbox_ids=None, agent_id=None,
                    now: datetime | None = None, with_tickets: bool = False,
                    tz: str | None = None) -> Report:
    """Figures for ``start``..``end`` (inclusive local days of ``tz``, an IANA name; None:
    :func:`default_timezone`).

    ``mailbox_ids``: restrict to these mailboxes (None: all). ``agent_id``: only this
    agent's tickets and replies (what an agent who is not an admin sees).
    ``with_tickets`` also returns the underlying ticket rows (for the CSV export).
    """
    check_range(start, end)
    state = get_state()
    m = state.models
    session = state.db.session
    now = now or utcnow()
    tz_name = tz or default_timezone(mailbox_ids)
    zone = ZoneInfo(tz_name)
    lo, hi = day_bounds(start, end, zone)
    T, M, TT, R = m.Ticket, m.Message, m.ticket_tags, m.SatisfactionRating

    def scoped(stmt, agent_column=None, mailbox_column=None):
        stmt = stmt.where(T.merged_into_id.is_(None), T.status != "spam")
        if mailbox_ids is not None:
            column = mailbox_column if mailbox_column is not None else T.mailbox_id
            stmt = stmt.where(column.in_(list(mailbox_ids)) if mailbox_ids else sa.false())
        if agent_id is not None:
            stmt = stmt.where((agent_column if agent_column is not None
                               else T.assignee_id) == agent_id)
        return stmt

    mailboxes = {mb.id: mb for mb in session.scalars(sa.select(m.Mailbox))}
    tag_names = {tid: name for tid, name in session.execute(sa.select(m.Tag.id, m.Tag.name))}
    timelines, bases = _timelines(mailboxes)
    for timeline in timelines.values():
        timeline.cover(lo - timedelta(days=30), max(hi, now))

    total = Figures("All")
    groups = {"mailbox": {}, "agent": {}, "tag": {}}

    def group(kind: str, key) -> Figures:
        found = groups[kind].get(key)
        if found is None:
            found = groups[kind][key] = Figures(label="", key=key)
        return found

    # --- tickets created or closed in the range: one pass over a few narrow columns -------
    # (new, first response, SLA, per day and hour; closed, resolution, first contact)
    fr_due = getattr(T, "first_response_due_at", None)
    res_due = getattr(T, "resolution_due_at", None)
    sla_met = sa.literal(0)
    sla_decided = sa.literal(0)
    for done, due in ((T.first_response_at, fr_due), (T.closed_at, res_due)):
        if due is None:  # pragma: no cover - the SLA columns are not there
            continue
        sla_met = sla_met + sa.case((sa.and_(due.is_not(None), done.is_not(None), done <= due),
                                     1), else_=0)
        sla_decided = sla_decided + sa.case(
            (sa.and_(due.is_not(None), sa.or_(done.is_not(None), due < now)), 1), else_=0)
    created_in = sa.and_(T.created_at >= lo, T.created_at < hi)
    closed_in = sa.and_(T.closed_at >= lo, T.closed_at < hi)
    in_range = sa.or_(created_in, closed_in)
    mostly = _mostly_in_range(session, T, lo, hi)
    if mostly:
        # Most tickets are in the range: reading the table in order beats two index range
        # scans plus a random row lookup per ticket (SQLite's planner cannot know). Both
        # bounds must be off the index, or SQLite still walks it for the upper one.
        created, closed = unindexed(T.created_at), unindexed(T.closed_at)
        in_range = sa.or_(sa.and_(created >= lo, created < hi),
                          sa.and_(closed >= lo, closed < hi))
    core = session.connection()  # Core rows: no ORM loading layer for 100k tuples
    # The durations stored by an earlier report are read as they are, with a flag (index 9)
    # telling whether they still fit: same schedule basis, same first response and closing
    # times (``_stored_durations_fit``). Those that do not are worked out afresh by a second
    # query on their ids (``_work_out_durations``) and stored for next time.
    rows = _tuples(core, scoped(sa.select(
        T.id, T.mailbox_id, T.assignee_id,
        sa.case((created_in, hour_key(T.created_at)), else_=None),
        T.report_first_response_seconds, sla_met, sla_decided,
        sa.case((closed_in, hour_key(T.closed_at)), else_=None),
        T.report_resolution_seconds, _stored_durations_fit(T, bases)).where(in_range)))
    # Tagged tickets per tag: each tag's figures are then worked out with C-level lookups
    # (rows by id, reply counts, set intersections) rather than a loop per ticket and tag.
    ids_of_tag: dict = defaultdict(list)
    tags_known = {r[0] for r in rows} if not mostly else set()  # tags loaded for these

    def load_tags(ticket_ids):
        """Tags of these tickets, by the pairs' primary key (ticket first)."""
        tags_known.update(ticket_ids)
        for chunk in range(0, len(ticket_ids), 5000):
            for ticket_id, tag_id in _tuples(core, sa.select(TT.c.ticket_id, TT.c.tag_id).where(
                    TT.c.ticket_id.in_(ticket_ids[chunk:chunk + 5000]))):
                ids_of_tag[tag_id].append(ticket_id)

    if mostly or len(rows) > 5000:  # every pair, or those of the range, in one statement
        pairs = sa.select(TT.c.ticket_id, TT.c.tag_id)
        if not mostly:
            pairs = scoped(pairs.join(T, T.id == TT.c.ticket_id).where(in_range))
        for ticket_id, tag_id in _tuples(core, pairs):
            ids_of_tag[tag_id].append(ticket_id)
    else:
        load_tags([r[0] for r in rows])
    if mostly:  # one pass over the partial index of agent replies, no join
        one_reply = {r[0] for r in _tuples(core, sa.select(M.ticket_id).where(
            *_agent_reply(M)).group_by(M.ticket_id).having(sa.func.count() == 1))}
    else:
        one_reply = set(session.scalars(scoped(
            sa.select(M.ticket_id).join(T, T.id == M.ticket_id)
            .where(closed_in, *_agent_reply(M))
            .group_by(M.ticket_id).having(sa.func.count() == 1))))

    days = {start + timedelta(days=i): DayPoint(start + timedelta(days=i))
            for i in range((end - start).days + 1)}
    heatmap = [[0] * 24 for _ in range(7)]
    # The rows are split by (mailbox, assignee) -- a handful of pairs -- and each pair, then
    # each tag, is added up column by column (``_fill``); the pairs are summed into the
    # total, mailbox and agent figures at the end.
    by_pair: dict = defaultdict(list)
    for row in rows:
        by_pair[row[1], row[2]].append(row)
    fills = []  # (ticket id, basis, first response, resolution, first epoch, closed epoch)
    if not all(map(itemgetter(9), rows)):  # durations not stored (or no longer fit)
        worked = _work_out_durations(core, T, [r[0] for r in rows if not r[9]], timelines,
                                     bases, fills)
        for pair_rows in by_pair.values():
            pair_rows[:] = [row if row[9] else row[:4] + (worked[row[0]][0],) + row[5:8]
                            + (worked[row[0]][1], 1) for row in pair_rows]
        rows = [row for pair_rows in by_pair.values() for row in pair_rows]
    for (mailbox_id, assignee_id), pair_rows in by_pair.items():
        bucket = Figures("")
        _fill(bucket, pair_rows, one_reply)
        # Sorted runs: the total's, mailbox's and agent's lists are then concatenations of
        # sorted runs, which the percentiles' sort merges instead of sorting from scratch.
        bucket.first_response.sort()
        bucket.resolution.sort()
        for fig in (total, group("mailbox", mailbox_id), group("agent", assignee_id)):
            fig.add(bucket)
    row_of = dict(zip(map(itemgetter(0), rows), rows))
    for tag_id, ticket_ids in ids_of_tag.items():
        tag_rows = list(filter(None, map(row_of.get, ticket_ids)))
        if tag_rows:
            _fill(group("tag", tag_id), tag_rows, one_reply)
    frt_of, res_of = {}, {}
    if with_tickets:
        frt_of = {r[0]: r[4] for r in rows if r[3] is not None and r[4] is not None}
        res_of = {r[0]: r[8] for r in rows if r[7] is not None}
    new_per_hour = Counter(map(itemgetter(3), rows))
    closed_per_hour = Counter(map(itemgetter(7), rows))
    new_per_hour.pop(None, None)
    closed_per_hour.pop(None, None)
    frt_per_hour: dict = defaultdict(list)
    for row in rows:
        if row[3] is not None and row[4] is not None:
            frt_per_hour[row[3]].append(row[4])
    local_hour = _LocalHours(zone, start, end)
    local = {key: local_hour(key) for key in new_per_hour.keys() | closed_per_hour.keys()}
    for key, count in new_per_hour.items():
        day, hour = local[key]
        days[day].new += count
        heatmap[day.weekday()][hour] += count
    for key, values in frt_per_hour.items():
        days[local[key][0]].first_response.extend(values)
    for key, count in closed_per_hour.items():
        days[local[key][0]].closed += count

    # --- replies sent in the range: one scan of the covering index, counted in Python -----
    # (a Counter over the plain rows is cheaper than SQLite's GROUP BY sort at 150k replies)
    spam = sa.select(T.id).where(T.status == "spam")
    replies = sa.select(M.ticket_id, M.mailbox_id, M.author_id).where(
        M.created_at >= lo, M.created_at < hi, *_agent_reply(M),
        M.ticket_id.not_in(spam))
    if mailbox_ids is not None:
        replies = replies.where(M.mailbox_id.in_(list(mailbox_ids)) if mailbox_ids
                                else sa.false())
    if agent_id is not None:
        replies = replies.where(M.author_id == agent_id)
    reply_rows = _tuples(core, replies)
    per_ticket = Counter(map(itemgetter(0), reply_rows))
    if not mostly:  # replies on tickets created and closed outside the range
        load_tags(list(set(per_ticket) - tags_known))
    per_pair = Counter(map(itemgetter(1, 2), reply_rows))
    for (mailbox_id, author_id), count in per_pair.items():
        total.replies += count
        group("mailbox", mailbox_id).replies += count
        group("agent", author_id).replies += count
    for tag_id, ticket_ids in ids_of_tag.items():
        count = sum(map(per_ticket.get, ticket_ids, repeat(0)))
        if count:
            group("tag", tag_id).replies += count

    # --- waiting now (not date-bound) and ratings given in the range -----------------------
    waiting_where = (
        T.status == "open", T.last_inbound_at.is_not(None),
        sa.or_(T.last_outbound_at.is_(None), T.last_outbound_at < T.last_inbound_at),
        sa.or_(T.snoozed_until.is_(None), T.snoozed_until <= now))
    waiting = _tuples(core, scoped(sa.select(T.id, T.mailbox_id, T.assignee_id)
                                   .where(*waiting_where)))
    per_pair = Counter((mailbox_id, assignee_id) for _, mailbox_id, assignee_id in waiting)
    for (mailbox_id, assignee_id), count in per_pair.items():
        total.waiting += count
        group("mailbox", mailbox_id).waiting += count
        group("agent", assignee_id).waiting += count
    # Ratings given in the range: one row per rated ticket (a few thousand a year). When
    # most tickets were read (and the report is not narrowed to a mailbox or an agent),
    # their mailbox and assignee are known: only the others are looked up (a join costs a
    # lookup per rating).
    rated_in = (R.updated_at >= lo, R.updated_at < hi)
    if mostly and mailbox_ids is None and agent_id is None:
        rated, others = [], []
        for ticket_id, rating in _tuples(core, sa.select(R.ticket_id, R.rating)
                                         .where(*rated_in)):
            row = row_of.get(ticket_id)
            if row is None:
                others.append(ticket_id)
            else:
                rated.append((ticket_id, row[1], row[2], rating))
        for chunk in range(0, len(others), 5000):
            rated += _tuples(core, scoped(
                sa.select(R.ticket_id, T.mailbox_id, T.assignee_id, R.rating)
                .join(T, T.id == R.ticket_id)
                .where(*rated_in, R.ticket_id.in_(others[chunk:chunk + 5000]))))
    else:
        rated = _tuples(core, scoped(
            sa.select(R.ticket_id, T.mailbox_id, T.assignee_id, R.rating)
            .join(T, T.id == R.ticket_id).where(*rated_in)))
    per_pair = Counter((mailbox_id, assignee_id, rating)
                       for _, mailbox_id, assignee_id, rating in rated)
    for (mailbox_id, assignee_id, rating), count in per_pair.items():
        total.ratings[rating] += count
        group("mailbox", mailbox_id).ratings[rating] += count
        group("agent", assignee_id).ratings[rating] += count
    # Tags of waiting and rated tickets: known already when every pair was read.
    if not mostly:
        load_tags(list({r[0] for r in waiting} - tags_known))
        load_tags(list({r[0] for r in rated} - tags_known))
    waiting_ids = set(map(itemgetter(0), waiting))
    rating_of = {ticket_id: rating for ticket_id, _, _, rating in rated}
    for tag_id, ticket_ids in ids_of_tag.items():
        count = len(waiting_ids.intersection(ticket_ids))
        if count:
            group("tag", tag_id).waiting += count
        given = Counter(filter(None, map(rating_of.get, ticket_ids)))
        if given:
            group("tag", tag_id).ratings.update(given)

    # --- labels and order ------------------------------------------------------------------
    for key, fig in groups["mailbox"].items():
        fig.label = mailboxes[key].name if key in mailboxes else f"Mailbox {key}"
    for key, fig in groups["tag"].items():
        fig.label = tag_names.get(key, f"Tag {key}")
    names = agent_names([k for k in groups["agent"] if k is not None])
    for key, fig in groups["agent"].items():
        fig.label = UNASSIGNED if key is None else names.get(key, f"User {key}")
    if agent_id is not None:
        groups["agent"] = {k: v for k, v in groups["agent"].items() if k == agent_id}

    def ordered(kind):
        return sorted((f for f in groups[kind].values() if not f.is_empty()),
                      key=lambda f: (f.label == UNASSIGNED, f.label.lower()))

    ticket_rows = []
    if with_tickets:  # a generator: the CSV export streams it row by row
        tags_of = defaultdict(list)
        for tag_id, ticket_ids in ids_of_tag.items():
            for ticket_id in ticket_ids:
                tags_of[ticket_id].append(tag_id)
        ticket_rows = _ticket_rows(session, scoped, lo, hi, frt_of, res_of, mailboxes,
                                   tag_names, tags_of, names)
    return Report(start=start, end=end, total=total, by_mailbox=ordered("mailbox"),
                  by_agent=ordered("agent"), by_tag=ordered("tag"),
                  days=[days[d] for d in sorted(days)], heatmap=heatmap,
                  business_hours=bool(timelines), tickets=ticket_rows, tz=tz_name,
                  fills=fills)


def _stored_durations_fit(T, bases: dict):
    """SQL condition: the ticket's stored durations were counted with its mailbox's current
    schedule (``bases``; mailboxes not in it count the wall clock) from its current first
    response and closing times. A reopened ticket (closed_at cleared or changed) or new
    hours, holidays or zone therefore fall back to working the durations out again."""
    basis = sa.case(bases, value=T.mailbox_id, else_=sa.literal(WALL_CLOCK)) if bases \
        else sa.literal(WALL_CLOCK)
    fits = sa.and_(T.report_basis == basis,
                   T.report_first_response_at.is_not_distinct_from(T.first_response_at),
                   T.report_closed_at.is_not_distinct_from(T.closed_at))
    return sa.case((fits, 1), else_=0)


def _work_out_durations(core, T, ticket_ids: list, timelines: dict, bases: dict,
                        fills: list) -> dict:
    """{ticket id: (first response, resolution)} of tickets whose stored durations are
    missing or no longer fit: the database gives wall-clock seconds, or for mailboxes with
    business hours the epoch seconds that the timeline turns into business seconds. Each is
    noted in ``fills`` (see :func:`store_durations`). Both durations are worked out whatever
    the range (the figures use only the first response of tickets created in it and the
    resolution of those closed in it)."""
    found = {}
    for chunk in range(0, len(ticket_ids), 5000):
        for (ticket_id, mailbox_id, frt, res, created, first, closed) in _tuples(core, sa.select(
                T.id, T.mailbox_id, seconds_between(T.created_at, T.first_response_at),
                seconds_between(T.created_at, T.closed_at), epoch_seconds(T.created_at),
                epoch_seconds(T.first_response_at), epoch_seconds(T.closed_at))
                .where(T.id.in_(ticket_ids[chunk:chunk + 5000]))):
            timeline = timelines.get(mailbox_id)
            if timeline is not None:
                frt, res = timeline.durations(created, first, closed)
            found[ticket_id] = (frt, res)
            fills.append((ticket_id, bases.get(mailbox_id, WALL_CLOCK), frt, res, first,
                          closed))
    return found


def store_durations(fills: list) -> int:
    """Store the durations a report worked out (``Report.fills``) on their tickets, for the
    next report to read; the caller commits. Each row is written only if its first
    response and closing times are still the ones the durations were counted from (a
    ticket closed again meanwhile keeps no stale value), and ``updated_at`` is left alone.
    Returns the number of rows sent."""
    if not fills:
        return 0
    state = get_state()
    table = state.models.Ticket.__table__
    c = table.c
    stmt = sa.update(table).where(
        c.id == sa.bindparam("t_id"),
        epoch_seconds(c.first_response_at).is_not_distinct_from(
            sa.bindparam("t_first", type_=sa.Float())),
        epoch_seconds(c.closed_at).is_not_distinct_from(
            sa.bindparam("t_closed", type_=sa.Float())),
    ).values(report_basis=sa.bindparam("t_basis"),
             report_first_response_seconds=sa.bindparam("t_frt", type_=sa.Float()),
             report_resolution_seconds=sa.bindparam("t_res", type_=sa.Float()),
             report_first_response_at=c.first_response_at, report_closed_at=c.closed_at,
             updated_at=c.updated_at)
    connection = state.db.session.connection()
    for chunk in range(0, len(fills), 5000):
        connection.execute(stmt, [
            {"t_id": ticket_id, "t_basis": basis, "t_frt": frt, "t_res": res,
             "t_first": first, "t_closed": closed}
            for ticket_id, basis, frt, res, first, closed in fills[chunk:chunk + 5000]])
    return len(fills)


def _fill(fig: Figures, rows: list, one_reply: set) -> None:
    """Add the ticket figures of ``rows`` (of the ticket query) to ``fig``.

    Column by column (``zip``, ``compress``, ``count``, ``sum`` run in C) rather than a few
    Python statements per ticket and figure, which were a fifth of the one-year report.
    A created hour (index 3) marks a ticket created in the range, a closed hour (7) one
    closed in it; only those count for first response / SLA and for resolution.
    """
    if not rows:
        return
    ids, _, _, created, frt, met, decided, closed, res = islice(zip(*rows), 9)
    fig.new += len(created) - created.count(None)
    fig.sla_met += sum(compress(met, created))
    fig.sla_decided += sum(compress(decided, created))
    fig.first_response.extend([x for x in compress(frt, created) if x is not None])
    resolution = list(compress(res, closed))
    fig.closed += len(resolution)
    fig.resolution.extend(resolution)
    if one_reply:
        fig.fcr_one_reply += len(one_reply.intersection(compress(ids, closed)))


def _ticket_rows(session, scoped, lo, hi, frt_of, res_of, mailboxes, tag_names, tags_of,
                 names):
    """The tickets behind the figures (created or closed in the range), for the CSV export:
    yielded as they are read, ``CSV_PAGE`` tickets per query in id order (keyset pages, so a
    year of tickets is never held as a list, and no server-side cursor is needed: those
    fail on PostgreSQL connections in autocommit mode). ``names``: assignee id -> name."""
    state = get_state()
    T, R = state.models.Ticket, state.models.SatisfactionRating
    columns = [T.id, T.mailbox_id, T.assignee_id, T.status, T.subject, T.created_at,
               T.first_response_at, T.closed_at,
               getattr(T, "first_response_due_at", sa.null()),
               getattr(T, "resolution_due_at", sa.null()), R.rating]
    in_range = sa.or_(sa.and_(T.created_at >= lo, T.created_at < hi),
                      sa.and_(T.closed_at >= lo, T.closed_at < hi))
    box_names = {key: mailbox.name for key, mailbox in mailboxes.items()}
    stmt = scoped(sa.select(*columns).outerjoin(R, R.ticket_id == T.id).where(in_range)) \
        .order_by(T.id).limit(CSV_PAGE)
    last_id = None
    while True:
        page = stmt if last_id is None else stmt.where(T.id > last_id)
        rows = session.connection().execute(page).all()
        for (ticket_id, mailbox_id, assignee_id, status, subject, created, first, closed,
             fr_due, res_due, rating) in rows:
            tag_ids = tags_of.get(ticket_id)
            yield dict(
                id=ticket_id, mailbox=box_names.get(mailbox_id, ""),
                assignee=names.get(assignee_id, "") if assignee_id is not None else "",
                status=status, subject=subject, created_at=created, first_response_at=first,
                closed_at=closed, first_response_seconds=frt_of.get(ticket_id),
                resolution_seconds=res_of.get(ticket_id),
                tags=";".join(sorted(tag_names.get(t, "") for t in tag_ids)) if tag_ids else "",
                first_response_due_at=fr_due, resolution_due_at=res_due, rating=rating or "")
        if len(rows) < CSV_PAGE:
            return
        last_id = rows[-1][0]


class _LocalHours:
    """UTC hour keys (``'2026-03-02 10'``) -> (local day, local hour) in ``zone``, cached (a
    year has 8760 hours). The middle of the UTC hour is converted, so zones half an hour off
    UTC put each hour where most of it falls; days are kept inside the report's range."""

    def __init__(self, zone: ZoneInfo, start: date, end: date):
        self.zone, self.start, self.end, self.cache = zone, start, end, {}

    def __call__(self, key: str) -> tuple[date, int]:
        found = self.cache.get(key)
        if found is None:
            moment = datetime(int(key[:4]), int(key[5:7]), int(key[8:10]), int(key[11:13]), 30,
                              tzinfo=timezone.utc).astimezone(self.zone)
            found = self.cache[key] = (min(max(moment.date(), self.start), self.end),
                                       moment.hour)
        return found


def _tuples(connection, stmt) -> list[tuple]:
    """The rows of ``stmt`` as the driver's plain tuples: building a SQLAlchemy ``Row`` per
    ticket costs more than the query at 100k tickets. Only for columns that need no result
    conversion (numbers and text)."""
    result = connection.execute(stmt)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _mostly_in_range(session, T, lo, hi) -> bool:
    """More than a quarter of all tickets created in the range (two index-only counts)?
    Then whole-table passes beat index lookups per ticket (SQLite's planner cannot know)."""
    everything = session.scalar(sa.select(sa.func.count()).select_from(T)) or 0
    inside = session.scalar(sa.select(sa.func.count()).select_from(T).where(
        T.created_at >= lo, T.created_at < hi)) or 0
    return everything > 1000 and inside * 4 > everything


def _agent_reply(M):
    """Conditions for "a reply an agent wrote" (not an automatic reply, not a forward).

    ``kind = 'outbound'`` is written literally so the planner may use the partial indexes.
    """
    return (M.kind == sa.literal_column("'outbound'"), M.author_id.is_not(None),
            sa.or_(M.thread_reason.is_(None), ~M.thread_reason.like("forwarded to %")))


def agent_names(ids) -> dict:
    """User id -> display name, loaded in one query."""
    state = get_state()
    if not ids:
        return {}
    from ..models import user_primary_key

    pk = getattr(state.user_model, user_primary_key(state.user_model).key)
    users = state.db.session.scalars(sa.select(state.user_model).where(pk.in_(list(ids))))
    from ..access import user_id

    return {user_id(u): state.extension.display_user(u)["name"] for u in users}


# -- CSV -------------------------------------------------------------------------------------
FIGURE_COLUMNS = [
    ("group", None), ("name", None), ("new", "new"), ("closed", "closed"),
    ("replies_sent", "replies"), ("first_response_median_seconds", "first_response_median"),
    ("first_response_p90_seconds", "first_response_p90"),
    ("resolution_median_seconds", "resolution_median"), ("resolution_p90_seconds", "resolution_p90"),
    ("first_contact_resolution", "fcr_rate"), ("sla_attainment", "sla_rate"),
    ("waiting_now", "waiting"), ("ratings", "rating_count"), ("csat", "csat"),
]


_FORMULA_STARTS = frozenset("=+-@\t\r")


def _cell(value) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (customer text included):
    text starting with = + - @ (or a tab / carriage return) gets a leading apostrophe."""
    kind = type(value)
    if value is None:
        return ""
    if kind is int:  # a number is never a formula
        return str(value)
    if kind is float:
        return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    if kind is datetime:
        return value.isoformat(" ", "seconds")
    text = value if kind is str else str(value)
    if text[:1] in _FORMULA_STARTS:
        text = "'" + text
    return text


def figures_csv(report: Report) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([name for name, _ in FIGURE_COLUMNS])
    sections = [("all", [report.total]), ("mailbox", report.by_mailbox),
                ("agent", report.by_agent), ("tag", report.by_tag)]
    for kind, figures in sections:
        for fig in figures:
            writer.writerow([_cell(kind), _cell(fig.label)] +
                            [_cell(getattr(fig, attr)) for _, attr in FIGURE_COLUMNS[2:]])
    return out.getvalue()


TICKET_COLUMNS = ["id", "mailbox", "assignee", "status", "subject", "tags", "created_at",
                  "first_response_at", "closed_at", "first_response_seconds",
                  "resolution_seconds", "first_response_due_at", "resolution_due_at", "rating"]


def iter_tickets_csv(report: Report, chunk_rows: int = 500):
    """The tickets CSV as text chunks of ``chunk_rows`` rows, for a streamed response:
    the rows are read, formatted and sent a chunk at a time, never all held at once."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(TICKET_COLUMNS)
    for n, t in enumerate(report.tickets, 1):
        writer.writerow([_cell(t[c]) for c in TICKET_COLUMNS])
        if n % chunk_rows == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def tickets_csv(report: Report) -> str:
    """The whole tickets CSV as one string (small exports, tests)."""
    return "".join(iter_tickets_csv(report))


# -- weekly summary --------------------------------------------------------------------------
def last_week(now: datetime, tz: str = "UTC") -> tuple[date, date, str]:
    """(Monday, Sunday, "2026-W47") of the ISO week before the one ``now`` (naive UTC) is in,
    in the zone ``tz``: the local week must be over before it is summed up."""
    today = now.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(tz)).date()
    monday = today - timedelta(days=today.weekday() + 7)
    year, week, _ = monday.isocalendar()
    return monday, monday + timedelta(days=6), f"{year}-W{week:02d}"


def summary_text(report: Report) -> str:
    t = report.total
    lines = [
        f"Week {report.start:%d %b} – {report.end:%d %b %Y} ({report.tz})",
        "",
        f"New tickets: {t.new}",
        f"Closed tickets: {t.closed}",
        f"Replies sent: {t.replies}",
        f"First response: median {format_duration(t.first_response_median)}, "
        f"90% within {format_duration(t.first_response_p90)}",
        f"Resolution: median {format_duration(t.resolution_median)}, "
        f"90% within {format_duration(t.resolution_p90)}",
        f"First-contact resolution: {format_percent(t.fcr_rate)}",
        f"SLA attainment: {format_percent(t.sla_rate)}",
        f"Customer satisfaction: {format_percent(t.csat)} ({t.rating_count} ratings)",
        f"Waiting now: {t.waiting}",
    ]
    if report.business_hours:
        lines.append("(Times count business hours where a mailbox has them.)")
    if report.by_mailbox:
        lines += ["", "Per mailbox:"]
        lines += [f"- {f.label}: {f.new} new, {f.closed} closed, first response median "
                  f"{format_duration(f.first_response_median)}" for f in report.by_mailbox]
    return "\n".join(lines) + "\n"


def summary_html(report: Report, report_url: str = "") -> str:
    """The same summary as a small HTML table (every name escaped)."""
    from html import escape

    t = report.total
    rows = [("New tickets", t.new), ("Closed tickets", t.closed), ("Replies sent", t.replies),
            ("First response (median / 90%)", f"{format_duration(t.first_response_median)} / "
             f"{format_duration(t.first_response_p90)}"),
            ("Resolution (median / 90%)", f"{format_duration(t.resolution_median)} / "
             f"{format_duration(t.resolution_p90)}"),
            ("First-contact resolution", format_percent(t.fcr_rate)),
            ("SLA attainment", format_percent(t.sla_rate)),
            ("Customer satisfaction", f"{format_percent(t.csat)} ({t.rating_count} ratings)"),
            ("Waiting now", t.waiting)]
    body = "".join(f"<tr><th align=\"left\">{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                   for k, v in rows)
    mailboxes = "".join(
        f"<tr><td>{escape(f.label)}</td><td>{f.new}</td><td>{f.closed}</td>"
        f"<td>{escape(format_duration(f.first_response_median))}</td></tr>"
        for f in report.by_mailbox)
    parts = [f"<h2>Week {report.start:%d %b} – {report.end:%d %b %Y} "
             f"({escape(report.tz)})</h2>",
             f"<table cellpadding=\"4\">{body}</table>"]
    if mailboxes:
        parts.append("<h3>Per mailbox</h3><table cellpadding=\"4\"><tr><th>Mailbox</th>"
                     "<th>New</th><th>Closed</th><th>First response (median)</th></tr>"
                     f"{mailboxes}</table>")
    if report_url:
        parts.append(f"<p><a href=\"{escape(report_url)}\">Full report</a></p>")
    return "<!DOCTYPE html><html><body style=\"font-family: sans-serif\">" + "".join(parts) \
        + "</body></html>"


def format_percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def send_weekly_summary(now: datetime | None = None, *, report_url: str = "") -> bool:
    """Queue last week's summary to the admins, once per ISO week.

    The period row and the notification are inserted in one transaction; the period is
    unique, so when several workers run this at once exactly one commit succeeds and the
    others roll back. Returns True when this call queued it.
    """
    from .notify import admin_recipients, queue_notification

    state = get_state()
    m = state.models
    session = state.db.session
    now = now or utcnow()
    tz = default_timezone()
    monday, sunday, period = last_week(now, tz)
    if session.scalar(sa.select(m.ReportDigest.id).where(m.ReportDigest.period == period)):
        return False
    report = compute_report(monday, sunday, now=now, tz=tz)
    if report_url:  # the link opens the same week
        from urllib.parse import urlencode

        report_url += ("&" if "?" in report_url else "?") + urlencode(
            {"start": monday.isoformat(), "end": sunday.isoformat(), "tz": tz})
    text = summary_text(report)
    if report_url:
        text += f"\nFull report: {report_url}\n"
    html = summary_html(report, report_url)
    try:
        # Claim the week first: a second worker's insert fails here (or waits for ours).
        session.add(m.ReportDigest(period=period, created_at=now))
        session.flush()
        queue_notification(admin_recipients(), f"Support summary for {period}", text,
                           html=html, reason="weekly_summary")
        session.commit()
    except sa.exc.IntegrityError:
        session.rollback()
        return False
    return True
