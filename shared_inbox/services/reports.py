"""Reports: what a team lead wants to know about a date range, per mailbox, agent and tag.

Definitions (the tests check them against figures worked out by hand):

- The range is whole UTC days, ``start`` to ``end`` inclusive. Spam and tickets merged into
  another one are left out everywhere.
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
their author. Counts of replies, waiting tickets, first-contact replies and ratings are SQL
``GROUP BY`` queries; the ticket figures come from two index range scans (created in range,
closed in range) of a few narrow columns, because their durations need business-hours
arithmetic that SQL cannot do portably, and the percentiles are computed over them in Python.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ..extension import get_state
from ..models import utcnow

RATINGS = ("great", "okay", "bad")
RATING_LABELS = {"great": "Great", "okay": "Okay", "bad": "Not good"}
MAX_DAYS = 731
UNASSIGNED = "Unassigned"


# -- small maths -----------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
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

    @property
    def first_response_median(self):
        return percentile(self.first_response, 0.5)

    @property
    def first_response_p90(self):
        return percentile(self.first_response, 0.9)

    @property
    def resolution_median(self):
        return percentile(self.resolution, 0.5)

    @property
    def resolution_p90(self):
        return percentile(self.resolution, 0.9)

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
    #: heatmap[weekday][hour] = new tickets (weekday 0 = Monday, UTC hours)
    heatmap: list
    business_hours: bool = False
    tickets: list = field(default_factory=list)


class ReportError(ValueError):
    """A date range that cannot be reported on (shown beside the field)."""


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """Naive-UTC [first moment, moment after the last day)."""
    return datetime.combine(start, time()), datetime.combine(end + timedelta(days=1), time())


def check_range(start: date, end: date) -> None:
    if end < start:
        raise ReportError("The end date is before the start date.")
    if (end - start).days >= MAX_DAYS:
        raise ReportError(f"Choose at most {MAX_DAYS} days.")


# -- business time ---------------------------------------------------------------------------
class _Clock:
    """Elapsed time per mailbox: business seconds when it has hours, else the wall clock.

    Schedules are loaded once per mailbox, so 100k tickets cost no extra queries.
    """

    def __init__(self, mailboxes: dict):
        self.schedules = {}
        try:
            from . import business_hours as bh
        except ImportError:  # pragma: no cover - the business-hours feature is absent
            bh = None
        self.bh = bh
        for mailbox_id, mailbox in mailboxes.items():
            schedule = None
            if bh is not None:
                try:
                    schedule = bh.schedule_for(mailbox)
                except AttributeError:  # pragma: no cover - columns not there yet
                    schedule = None
            self.schedules[mailbox_id] = schedule
        self.any_hours = any(s is not None for s in self.schedules.values())

    def seconds(self, mailbox_id: int, start: datetime, end: datetime) -> float:
        schedule = self.schedules.get(mailbox_id)
        if schedule is None:
            return max((end - start).total_seconds(), 0.0)
        return self.bh.business_seconds_between(schedule, start, end)


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


#: julianday() arithmetic is a float of days; rounded to the millisecond it came from.


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element, compiler, **kw):
    start, end = list(element.clauses)
    return (f"round((julianday({compiler.process(end, **kw)}) - "
            f"julianday({compiler.process(start, **kw)})) * 86400.0, 3)")


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


def compute_report(start: date, end: date, *, mailbox_ids=None, agent_id=None,
                   now: datetime | None = None, with_tickets: bool = False) -> Report:
    """Figures for ``start``..``end`` (inclusive UTC days).

    ``mailbox_ids``: restrict to these mailboxes (None: all). ``agent_id``: only this
    agent's tickets and replies (what an agent who is not an admin sees).
    ``with_tickets`` also returns the underlying ticket rows (for the CSV export).
    """
    check_range(start, end)
    state = get_state()
    m = state.models
    session = state.db.session
    now = now or utcnow()
    lo, hi = day_bounds(start, end)
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
    clock = _Clock(mailboxes)
    hours_boxes = [i for i, s in clock.schedules.items() if s is not None]

    total = Figures("All")
    groups = {"mailbox": {}, "agent": {}, "tag": {}}

    def group(kind: str, key) -> Figures:
        found = groups[kind].get(key)
        if found is None:
            found = groups[kind][key] = Figures(label="", key=key)
        return found

    def business(window, end_column):
        """{ticket id: business seconds} for the tickets of mailboxes with hours."""
        if not hours_boxes:
            return {}
        rows = session.execute(scoped(
            sa.select(T.id, T.mailbox_id, T.created_at, end_column)
            .where(window >= lo, window < hi, end_column.is_not(None),
                   T.mailbox_id.in_(hours_boxes))))
        return {tid: clock.seconds(mb, a, b) for tid, mb, a, b in rows}

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
        # scans plus a random row lookup per ticket (SQLite's planner cannot know; an
        # expression on the column keeps it off the indexes).
        in_range = sa.or_(
            sa.and_(sa.func.coalesce(T.created_at, None) >= lo, T.created_at < hi),
            sa.and_(sa.func.coalesce(T.closed_at, None) >= lo, T.closed_at < hi))
    core = session.connection()  # Core rows: no ORM loading layer for 100k tuples
    rows = core.execute(scoped(sa.select(
        T.id, T.mailbox_id, T.assignee_id,
        sa.case((created_in, hour_key(T.created_at)), else_=None),
        seconds_between(T.created_at, T.first_response_at),
        sla_met, sla_decided,
        sa.case((closed_in, hour_key(T.closed_at)), else_=None),
        seconds_between(T.created_at, T.closed_at)).where(in_range))).all()
    frt_business = business(T.created_at, T.first_response_at)
    res_business = business(T.closed_at, T.closed_at)
    tags_of = defaultdict(list)
    if mostly:  # every pair, read straight from the table's primary key
        pairs = sa.select(TT.c.ticket_id, TT.c.tag_id)
    else:
        pairs = scoped(sa.select(TT.c.ticket_id, TT.c.tag_id).join(T, T.id == TT.c.ticket_id)
                       .where(in_range))
    for ticket_id, tag_id in core.execute(pairs).all():
        tags_of[ticket_id].append(tag_id)
    one_reply = set(session.scalars(scoped(
        sa.select(M.ticket_id).join(T, T.id == M.ticket_id)
        .where(closed_in, *_agent_reply(M))
        .group_by(M.ticket_id).having(sa.func.count() == 1))))

    days = {start + timedelta(days=i): DayPoint(start + timedelta(days=i))
            for i in range((end - start).days + 1)}
    day_of = {d.isoformat(): p for d, p in days.items()}
    heatmap = [[0] * 24 for _ in range(7)]
    new_per_hour: Counter = Counter()
    closed_per_day: Counter = Counter()
    frt_of, res_of = {}, {}
    # One bucket per (mailbox, assignee) pair: a handful of them, so each ticket touches one
    # object; they are added up into the total, mailbox and agent figures at the end.
    buckets: dict = {}
    by_tag = groups["tag"]
    for (ticket_id, mailbox_id, assignee_id, created_key, frt, met, decided,
         closed_key, res) in rows:
        bucket = buckets.get((mailbox_id, assignee_id))
        if bucket is None:
            bucket = buckets[(mailbox_id, assignee_id)] = Figures("")
        tag_ids = tags_of.get(ticket_id)
        targets = [bucket] + [by_tag.get(t) or group("tag", t) for t in tag_ids] \
            if tag_ids else (bucket,)
        if created_key is not None:
            if frt is not None:
                if frt_business:
                    frt = frt_business.get(ticket_id, frt)
                if with_tickets:
                    frt_of[ticket_id] = frt
                day_of[created_key[:10]].first_response.append(frt)
            for fig in targets:
                fig.new += 1
                fig.sla_met += met
                fig.sla_decided += decided
                if frt is not None:
                    fig.first_response.append(frt)
            new_per_hour[created_key] += 1
        if closed_key is not None:
            if res_business:
                res = res_business.get(ticket_id, res)
            if with_tickets:
                res_of[ticket_id] = res
            fcr = ticket_id in one_reply
            for fig in targets:
                fig.closed += 1
                fig.resolution.append(res)
                fig.fcr_one_reply += fcr
            closed_per_day[closed_key[:10]] += 1
    for (mailbox_id, assignee_id), bucket in buckets.items():
        for fig in (total, group("mailbox", mailbox_id), group("agent", assignee_id)):
            fig.add(bucket)
    for key, count in new_per_hour.items():
        day = date.fromisoformat(key[:10])
        days[day].new += count
        heatmap[day.weekday()][int(key[11:13])] += count
    for key, count in closed_per_day.items():
        day_of[key].closed += count

    # --- replies sent in the range: one scan, per ticket / mailbox / author ----------------
    spam = sa.select(T.id).where(T.status == "spam")
    replies = sa.select(M.ticket_id, M.mailbox_id, M.author_id, sa.func.count()).where(
        M.created_at >= lo, M.created_at < hi, *_agent_reply(M),
        M.ticket_id.not_in(spam))
    if mailbox_ids is not None:
        replies = replies.where(M.mailbox_id.in_(list(mailbox_ids)) if mailbox_ids
                                else sa.false())
    if agent_id is not None:
        replies = replies.where(M.author_id == agent_id)
    reply_rows = core.execute(
        replies.group_by(M.ticket_id, M.mailbox_id, M.author_id)).all()
    missing = [] if mostly else list({r[0] for r in reply_rows} - {r[0] for r in rows})
    for chunk in range(0, len(missing), 5000):  # replies on tickets older than the range
        for ticket_id, tag_id in session.execute(sa.select(TT.c.ticket_id, TT.c.tag_id).where(
                TT.c.ticket_id.in_(missing[chunk:chunk + 5000]))):
            tags_of[ticket_id].append(tag_id)
    per_pair: Counter = Counter()
    per_tag: Counter = Counter()
    for ticket_id, mailbox_id, author_id, count in reply_rows:
        per_pair[(mailbox_id, author_id)] += count
        tag_ids = tags_of.get(ticket_id)
        if tag_ids:
            for tag_id in tag_ids:
                per_tag[tag_id] += count
    for (mailbox_id, author_id), count in per_pair.items():
        total.replies += count
        group("mailbox", mailbox_id).replies += count
        group("agent", author_id).replies += count
    for tag_id, count in per_tag.items():
        group("tag", tag_id).replies += count

    # --- waiting now (not date-bound) and ratings given in the range (GROUP BY) -----------
    waiting_where = (
        T.status == "open", T.last_inbound_at.is_not(None),
        sa.or_(T.last_outbound_at.is_(None), T.last_outbound_at < T.last_inbound_at),
        sa.or_(T.snoozed_until.is_(None), T.snoozed_until <= now))
    for mailbox_id, assignee_id, count in session.execute(scoped(
            sa.select(T.mailbox_id, T.assignee_id, sa.func.count(T.id)).where(*waiting_where)
            .group_by(T.mailbox_id, T.assignee_id))):
        total.waiting += count
        group("mailbox", mailbox_id).waiting += count
        group("agent", assignee_id).waiting += count
    for tag_id, count in session.execute(scoped(
            sa.select(TT.c.tag_id, sa.func.count(T.id)).join(TT, TT.c.ticket_id == T.id)
            .where(*waiting_where).group_by(TT.c.tag_id))):
        group("tag", tag_id).waiting += count

    rated = (R.updated_at >= lo, R.updated_at < hi)
    for mailbox_id, assignee_id, rating, count in session.execute(scoped(
            sa.select(T.mailbox_id, T.assignee_id, R.rating, sa.func.count(R.id))
            .join(T, T.id == R.ticket_id).where(*rated)
            .group_by(T.mailbox_id, T.assignee_id, R.rating))):
        total.ratings[rating] += count
        group("mailbox", mailbox_id).ratings[rating] += count
        group("agent", assignee_id).ratings[rating] += count
    for tag_id, rating, count in session.execute(scoped(
            sa.select(TT.c.tag_id, R.rating, sa.func.count(R.id))
            .join(T, T.id == R.ticket_id).join(TT, TT.c.ticket_id == T.id).where(*rated)
            .group_by(TT.c.tag_id, R.rating))):
        group("tag", tag_id).ratings[rating] += count

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
    if with_tickets:
        ticket_rows = _ticket_rows(session, scoped, lo, hi, frt_of, res_of, mailboxes,
                                   tag_names, tags_of)
    return Report(start=start, end=end, total=total, by_mailbox=ordered("mailbox"),
                  by_agent=ordered("agent"), by_tag=ordered("tag"),
                  days=[days[d] for d in sorted(days)], heatmap=heatmap,
                  business_hours=clock.any_hours, tickets=ticket_rows)


def _ticket_rows(session, scoped, lo, hi, frt_of, res_of, mailboxes, tag_names, tags_of):
    """The tickets behind the figures (created or closed in the range), for the CSV export."""
    state = get_state()
    T = state.models.Ticket
    columns = [T.id, T.mailbox_id, T.assignee_id, T.status, T.subject, T.created_at,
               T.first_response_at, T.closed_at,
               getattr(T, "first_response_due_at", sa.null()),
               getattr(T, "resolution_due_at", sa.null())]
    core = session.connection()  # Core rows: no ORM loading layer for 100k tuples
    rows = core.execute(scoped(sa.select(*columns).where(sa.or_(
        sa.and_(T.created_at >= lo, T.created_at < hi),
        sa.and_(T.closed_at >= lo, T.closed_at < hi)))).order_by(T.id)).all()
    names = agent_names({r[2] for r in rows if r[2] is not None})
    out = []
    for (ticket_id, mailbox_id, assignee_id, status, subject, created, first, closed, fr_due,
         res_due) in rows:
        out.append(dict(
            id=ticket_id, mailbox=mailboxes[mailbox_id].name if mailbox_id in mailboxes else "",
            assignee=names.get(assignee_id, "") if assignee_id is not None else "",
            status=status, subject=subject, created_at=created, first_response_at=first,
            closed_at=closed, first_response_seconds=frt_of.get(ticket_id),
            resolution_seconds=res_of.get(ticket_id),
            tags=[tag_names.get(t, "") for t in tags_of.get(ticket_id, ())],
            first_response_due_at=fr_due, resolution_due_at=res_due))
    return out


def _mostly_in_range(session, T, lo, hi) -> bool:
    """More than a quarter of all tickets created in the range (two index-only counts)?
    PostgreSQL's planner knows from its statistics; only SQLite needs telling."""
    if session.get_bind().dialect.name != "sqlite":
        return False
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


def _sla(created_in, first_response, closed, fr_due, res_due, now) -> tuple[int, int]:
    """(targets met, targets decided) for one ticket created in the range."""
    if not created_in:
        return 0, 0
    met = decided = 0
    for done, due in ((first_response, fr_due), (closed, res_due)):
        if due is None:
            continue
        if done is not None:
            decided += 1
            met += done <= due
        elif now > due:
            decided += 1
    return met, decided


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


def _cell(value) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (customer text included)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
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


def tickets_csv(report: Report) -> str:
    import csv
    import io

    state = get_state()
    R = state.models.SatisfactionRating
    ids = [t["id"] for t in report.tickets]
    ratings = {}
    for chunk in range(0, len(ids), 5000):
        ratings.update(state.db.session.execute(
            sa.select(R.ticket_id, R.rating).where(R.ticket_id.in_(ids[chunk:chunk + 5000])))
            .all())
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(TICKET_COLUMNS)
    for t in report.tickets:
        row = dict(t, tags=";".join(t["tags"]), rating=ratings.get(t["id"], ""))
        writer.writerow([_cell(row[c]) for c in TICKET_COLUMNS])
    return out.getvalue()


# -- weekly summary --------------------------------------------------------------------------
def last_week(now: datetime) -> tuple[date, date, str]:
    """(Monday, Sunday, "2026-W47") of the ISO week before the one ``now`` is in."""
    monday = now.date() - timedelta(days=now.weekday() + 7)
    year, week, _ = monday.isocalendar()
    return monday, monday + timedelta(days=6), f"{year}-W{week:02d}"


def summary_text(report: Report) -> str:
    t = report.total
    lines = [
        f"Week {report.start:%d %b} – {report.end:%d %b %Y} (UTC)",
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
    parts = [f"<h2>Week {report.start:%d %b} – {report.end:%d %b %Y} (UTC)</h2>",
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
    monday, sunday, period = last_week(now)
    if session.scalar(sa.select(m.ReportDigest.id).where(m.ReportDigest.period == period)):
        return False
    report = compute_report(monday, sunday, now=now)
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
