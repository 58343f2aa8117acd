"""The inbox list: folders with counts, filters, sorts, search, keyset pagination, bulk actions.

A page costs a constant number of queries whatever its size: the visible mailboxes, one
grouped query for every folder count (per mailbox), the page of tickets and one
``selectinload`` per relation shown, one query for the agent's unread state, the tags and
the agents offered in the filters.
"""
from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections import OrderedDict
from datetime import datetime
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..access import user_id, visible_mailbox_ids
from ..config import cv
from ..extension import get_state
from ..models import STATUSES, user_primary_key, utcnow
from ..services import bulk
from ..services.reading import unread_ticket_ids
from ..services.search import ticket_search_condition

FOLDERS = [
    ("unassigned", "Unassigned"),
    ("mine", "Mine"),
    ("assigned", "Assigned"),
    ("open", "All open"),
    ("pending", "Pending"),
    ("snoozed", "Snoozed"),
    ("closed", "Closed"),
    ("spam", "Spam"),
]

SORTS = [("newest", "Newest"), ("oldest", "Oldest"), ("waiting", "Waiting longest"),
         ("due", "Due soonest")]

BULK_STATUSES = ("open", "pending", "closed")


def folder_conditions(m, me, now=None) -> dict:
    now = now or utcnow()
    awake = sa.or_(m.Ticket.snoozed_until.is_(None), m.Ticket.snoozed_until <= now)
    return {
        "unassigned": sa.and_(m.Ticket.status == "open", m.Ticket.assignee_id.is_(None), awake),
        "mine": sa.and_(m.Ticket.status.in_(("open", "pending")), m.Ticket.assignee_id == me),
        "assigned": sa.and_(m.Ticket.status == "open", m.Ticket.assignee_id.isnot(None), awake),
        "open": sa.and_(m.Ticket.status == "open", awake),
        "pending": m.Ticket.status == "pending",
        "snoozed": sa.and_(m.Ticket.status == "open", m.Ticket.snoozed_until > now),
        "closed": m.Ticket.status == "closed",
        "spam": m.Ticket.status == "spam",
    }


def folder_counts(m, where, me, now) -> dict:
    """``{mailbox_id: {folder: count}}`` from one query grouped by status and mailbox.

    Open tickets get four aggregates per group, the other statuses a plain count (a
    ``UNION ALL`` of both halves, each an index-only scan of ``ix_<prefix>ticket_folder_counts``),
    folded into the eight folders here; the query must agree with :func:`folder_conditions`
    (tests compare both). See :func:`cached_folder_counts` for the per-process cache.
    """
    return _folder_counts(m, where, me, now)[0]


def _folder_counts(m, where, me, now, *, with_version=False):
    """The counts, the earliest future ``snoozed_until`` (when they next change by
    themselves, a snoozed ticket waking up) or None, and with ``with_version`` the
    :func:`tickets_version` read by the same statement (None when no row came back)."""
    T = m.Ticket
    snoozed = T.snoozed_until > now
    awake = sa.or_(T.snoozed_until.is_(None), T.snoozed_until <= now)
    zero = sa.literal_column("0")
    mine_sum = (sa.func.sum(sa.case((T.assignee_id == me, 1), else_=0)) if me is not None
                else zero)
    opened = (
        sa.select(T.status, T.mailbox_id, sa.func.count().label("total"),
                  sa.func.sum(sa.case((sa.and_(T.assignee_id.is_(None), awake), 1), else_=0))
                  .label("unassigned"),
                  mine_sum.label("mine"),
                  sa.func.sum(sa.case((snoozed, 1), else_=0)).label("snoozed"),
                  sa.func.min(sa.case((snoozed, T.snoozed_until))).label("wake"))
        .where(*where, T.status == "open").group_by(T.status, T.mailbox_id)
    )
    others = (
        sa.select(T.status, T.mailbox_id, sa.func.count(), zero, mine_sum, zero, sa.null())
        .where(*where, T.status.in_([s for s in STATUSES if s != "open"]))
        .group_by(T.status, T.mailbox_id)
    )
    stmt = sa.union_all(opened, others)
    if with_version:
        counted = stmt.subquery()
        stmt = sa.select(*counted.c, *_version_columns(m)).select_from(counted)
    rows = get_state().db.session.execute(stmt).all()
    version = tuple(rows[0][7:]) if with_version and rows else None
    out: dict = {}
    wake = None
    for status, mailbox, total, unassigned, mine, n_snoozed, first_wake, *_ in rows:
        total, unassigned, mine, n_snoozed = (int(v or 0) for v in (total, unassigned, mine,
                                                                     n_snoozed))
        if first_wake is not None:
            if isinstance(first_wake, str):  # SQLite returns MIN() of a CASE as text
                first_wake = datetime.fromisoformat(first_wake)
            wake = first_wake if wake is None else min(wake, first_wake)
        c = out.setdefault(mailbox, {key: 0 for key, _ in FOLDERS})
        if status == "open":
            c["unassigned"] += unassigned
            c["assigned"] += total - n_snoozed - unassigned
            c["open"] += total - n_snoozed
            c["snoozed"] += n_snoozed
        if status in ("open", "pending"):
            c["mine"] += mine
        if status in ("pending", "closed", "spam"):
            c[status] += total
    return out, wake, version


# ------------------------------------------------------------------- counts cache
# The folder counts scan every ticket of the visible mailboxes (~10 ms per 100k tickets
# on SQLite), on every page. They are cached per process, per (database, visible
# mailboxes, agent), and each page first asks the database whether tickets changed:
# ``max(id)`` and ``max(updated_at)`` (two index look-ups; every ORM or Core update of a
# ticket bumps ``updated_at``, a new ticket bumps ``max(id)``). An entry is also dropped
# when the first snoozed ticket wakes up, and after COUNTS_TTL seconds whatever happens,
# which bounds the staleness the check cannot see: a ticket deleted (mailbox removed), a
# raw SQL update that leaves ``updated_at`` alone, or two workers committing out of order
# (an older ``updated_at`` made visible after a newer one). The ticket list itself is
# never cached.

COUNTS_TTL = 10.0
COUNTS_CACHE_SIZE = 512

_counts_caches: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_counts_lock = threading.Lock()


def _version_columns(m):
    T = m.Ticket
    return (sa.select(sa.func.max(T.id)).scalar_subquery().label("v_id"),
            sa.select(sa.func.max(T.updated_at)).scalar_subquery().label("v_updated"))


def tickets_version(m) -> tuple:
    """A cheap fingerprint of the ticket table (see above): two index look-ups."""
    return tuple(get_state().db.session.execute(sa.select(*_version_columns(m))).one())


def cached_folder_counts(m, where, me, now, scope) -> dict:
    """:func:`folder_counts`, served from the per-process cache when still valid.

    One statement either way when nothing changed: the fingerprint alone (hit), or the
    counts with the fingerprint (no usable entry); two when the fingerprint moved.
    """
    engine = get_state().db.engine
    key = (scope, me)
    clock = time.monotonic()
    with _counts_lock:
        cache = _counts_caches.setdefault(engine, OrderedDict())
        entry = cache.get(key)
    if entry is not None:
        e_version, expires, wake, counts = entry
        if clock < expires and (wake is None or now < wake):
            version = tickets_version(m)
            if version == e_version:
                return counts
            counts, wake, _ = _folder_counts(m, where, me, now)
        else:
            entry = None
    if entry is None:
        counts, wake, version = _folder_counts(m, where, me, now, with_version=True)
    with _counts_lock:
        if version is None:
            cache.pop(key, None)
        else:
            cache[key] = (version, clock + COUNTS_TTL, wake, counts)
            cache.move_to_end(key)
        while len(cache) > COUNTS_CACHE_SIZE:
            cache.popitem(last=False)
    return counts


def clear_counts_cache() -> None:
    with _counts_lock:
        _counts_caches.clear()


def folder_condition(folder: str, m, me):
    conditions = folder_conditions(m, me)
    if folder not in conditions:
        abort(404)
    return conditions[folder]


def _visible(column, ids):
    if ids is None:
        return sa.true()
    return column.in_(sorted(ids)) if ids else sa.false()


def waiting_condition(m):
    """The customer wrote last: an inbound message newer than our last reply."""
    return sa.and_(m.Ticket.last_inbound_at.isnot(None), sa.or_(
        m.Ticket.last_outbound_at.is_(None),
        m.Ticket.last_outbound_at < m.Ticket.last_inbound_at))


def _is_waiting(t) -> bool:
    return t.last_inbound_at is not None and (
        t.last_outbound_at is None or t.last_outbound_at < t.last_inbound_at)


# ------------------------------------------------------------------------------ sorts
# Each sort is a list of (SQL expression, ascending?) ending with the ticket id, so the
# order is total and a keyset cursor (the last row's key) resumes exactly after it.

def sort_keys(sort: str, m):
    if sort == "due":
        # SLA (si0011): tickets with a due time first, soonest (most overdue) first; then
        # the others, least recently active first.
        return [
            (sa.case((m.Ticket.sla_due_at.is_(None), 1), else_=0), True),
            (sa.func.coalesce(m.Ticket.sla_due_at, m.Ticket.last_message_at), True),
            (m.Ticket.id, True),
        ]
    if sort == "oldest":
        return [(m.Ticket.last_message_at, True), (m.Ticket.id, True)]
    if sort == "waiting":
        waiting = waiting_condition(m)
        return [
            (sa.case((waiting, 1), else_=0), False),
            (sa.case((waiting, m.Ticket.last_inbound_at), else_=m.Ticket.last_message_at),
             True),
            (m.Ticket.id, True),
        ]
    return [(m.Ticket.last_message_at, False), (m.Ticket.id, False)]


def cursor_of(sort: str, t) -> str:
    if sort == "due":
        no_due = t.sla_due_at is None
        return f"{int(no_due)}_{(t.last_message_at if no_due else t.sla_due_at).isoformat()}_{t.id}"
    if sort == "waiting":
        waiting = _is_waiting(t)
        stamp = t.last_inbound_at if waiting else t.last_message_at
        return f"{int(waiting)}_{stamp.isoformat()}_{t.id}"
    return f"{t.last_message_at.isoformat()}_{t.id}"


def parse_cursor(sort: str, value: str | None):
    """The key values of a cursor; 400 when it is not one of ours."""
    if not value:
        return None
    try:
        if sort in ("waiting", "due"):
            flag, stamp, ticket_id = value.split("_")
            if flag not in ("0", "1"):
                raise ValueError(flag)
            return [int(flag), datetime.fromisoformat(stamp), int(ticket_id)]
        stamp, ticket_id = value.rsplit("_", 1)
        return [datetime.fromisoformat(stamp), int(ticket_id)]
    except ValueError:
        abort(400, description="bad page cursor")


def after_cursor(keys, values):
    """Rows strictly after ``values`` in the order of ``keys`` (lexicographic)."""
    clauses = []
    for i, (expr, ascending) in enumerate(keys):
        step = expr > values[i] if ascending else expr < values[i]
        clauses.append(sa.and_(*[k[0] == v for k, v in zip(keys[:i], values[:i])], step))
    return sa.or_(*clauses)


# ---------------------------------------------------------------------------- helpers

def sla_badge(ticket, now):
    """(state, text) of the SLA badge on a row: ("soon", "due in 45 min"), or (None, "")."""
    from ..services import sla

    return sla.sla_state(ticket, now), sla.describe_due(ticket, now)


def parse_user_id(value):
    """A user id from a form/query string, typed like the host's key; None if invalid."""
    if value in (None, ""):
        return None
    pk = user_primary_key(get_state().user_model)
    try:
        python_type = pk.type.python_type
    except NotImplementedError:
        return value
    try:
        if python_type is uuid.UUID:
            return uuid.UUID(str(value))
        return python_type(value)
    except (TypeError, ValueError):
        return None


def _int(value):
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _agents(m, ids, me):
    """Users offered as assignees: members of the visible mailboxes, and the agent."""
    state = get_state()
    User = state.user_model
    pk = user_primary_key(User)
    members = sa.select(m.MailboxMember.user_id).where(_visible(m.MailboxMember.mailbox_id, ids))
    return list(state.db.session.scalars(
        sa.select(User).where(sa.or_(pk.in_(members), pk == me)).order_by(pk)))


def _filters():
    """The list's query arguments (also carried by links and the bulk form)."""
    args = request.args
    out = {
        "folder": args.get("folder", "open"),
        "mailbox": _int(args.get("mailbox")),
        "tag": _int(args.get("tag")),
        "assignee": args.get("assignee") or None,
        "status": args.get("status") if args.get("status") in STATUSES else None,
        "sort": args.get("sort") if args.get("sort") in dict(SORTS) else "newest",
        "q": (args.get("q") or "").strip() or None,
    }
    return out


def list_url(bp_name: str, filters: dict, **changes) -> str:
    params = {k: v for k, v in {**filters, **changes}.items() if v not in (None, "")}
    return url_for(f"{bp_name}.index", **params)


def register(bp):
    @bp.route("/")
    def index():
        state = get_state()
        m = state.models
        session = state.db.session
        dialect = session.get_bind().dialect.name
        f = _filters()
        folder = f["folder"]
        me = user_id(current_user)
        now = utcnow()
        conditions = folder_conditions(m, me, now)
        if folder not in conditions:
            abort(404)

        ids = visible_mailbox_ids()
        mailboxes = list(session.scalars(
            sa.select(m.Mailbox).where(_visible(m.Mailbox.id, ids)).order_by(m.Mailbox.name)))
        base = [_visible(m.Ticket.mailbox_id, ids), m.Ticket.merged_into_id.is_(None)]

        # Every folder's count, per mailbox, in one grouped query (index-only scan), cached
        # per process while the tickets do not change (see cached_folder_counts).
        scope = None if ids is None else tuple(sorted(ids))
        per_mailbox = cached_folder_counts(m, base, me, now, scope)
        mailbox_id = f["mailbox"]
        counts = {key: sum(c[key] for mb, c in per_mailbox.items()
                           if not mailbox_id or mb == mailbox_id) for key, _ in FOLDERS}

        where = [*base, conditions[folder]]
        if mailbox_id:
            where.append(m.Ticket.mailbox_id == mailbox_id)
        if f["status"]:
            where.append(m.Ticket.status == f["status"])
        if f["tag"]:
            # EXISTS (a probe of the (ticket_id, tag_id) key per ticket, walking the folder
            # in sort order) rather than IN (every ticket of the tag, then a sort).
            tt = m.ticket_tags.c
            where.append(sa.exists().where(tt.ticket_id == m.Ticket.id, tt.tag_id == f["tag"]))
        if f["assignee"] == "none":
            where.append(m.Ticket.assignee_id.is_(None))
        elif f["assignee"]:
            assignee = parse_user_id(f["assignee"])
            where.append(m.Ticket.assignee_id == assignee if assignee is not None
                         else sa.false())
        if f["q"]:
            matching = ticket_search_condition(f["q"], m, dialect, session)
            if matching is not None:
                where.append(matching)

        sort = f["sort"]
        keys = sort_keys(sort, m)
        page_size = max(1, int(cv("PAGE_SIZE")))
        cursor = parse_cursor(sort, request.args.get("after"))
        if cursor:
            where.append(after_cursor(keys, cursor))
        if sort == "waiting":
            # Waiting tickets by last_inbound_at, then the others by last_message_at: each
            # half walks an index in order (ix_..._status_inbound, ix_..._status_last) and
            # stops after a page, instead of sorting every ticket of the folder by CASEs.
            T = m.Ticket
            waiting = waiting_condition(m)
            first = (sa.select(T.id).where(*where, waiting)
                     .order_by(T.last_inbound_at, T.id).limit(page_size + 1).subquery())
            then = (sa.select(T.id).where(*where, sa.not_(waiting))
                    .order_by(T.last_message_at, T.id).limit(page_size + 1).subquery())
            halves = sa.union_all(sa.select(first.c.id), sa.select(then.c.id)).subquery()
            where = [T.id.in_(sa.select(halves.c.id))]
        elif sort == "due":
            # The same in two halves: due tickets walk ix_..._status_sla_due (si0011).
            T = m.Ticket
            first = (sa.select(T.id).where(*where, T.sla_due_at.isnot(None))
                     .order_by(T.sla_due_at, T.id).limit(page_size + 1).subquery())
            then = (sa.select(T.id).where(*where, T.sla_due_at.is_(None))
                    .order_by(T.last_message_at, T.id).limit(page_size + 1).subquery())
            halves = sa.union_all(sa.select(first.c.id), sa.select(then.c.id)).subquery()
            where = [T.id.in_(sa.select(halves.c.id))]
        query = (
            sa.select(m.Ticket).where(*where)
            .options(sa.orm.selectinload(m.Ticket.customer), sa.orm.selectinload(m.Ticket.tags),
                     sa.orm.selectinload(m.Ticket.assignee))
            .order_by(*[expr.asc() if asc else expr.desc() for expr, asc in keys])
            .limit(page_size + 1)
        )
        tickets = list(session.scalars(query))
        next_cursor = None
        if len(tickets) > page_size:
            tickets = tickets[:page_size]
            next_cursor = cursor_of(sort, tickets[-1])
        unread = unread_ticket_ids(tickets, current_user)
        tags = list(session.scalars(sa.select(m.Tag).order_by(m.Tag.name)))
        agents = _agents(m, ids, me)
        mailbox_names = {mb.id: mb.name for mb in mailboxes}
        return render_template(
            "shared_inbox/inbox.html", tickets=tickets, folders=FOLDERS, counts=counts,
            per_mailbox=per_mailbox, folder=folder, mailboxes=mailboxes,
            mailbox_names=mailbox_names, mailbox_id=mailbox_id, filters=f, sorts=SORTS,
            statuses=STATUSES, bulk_statuses=BULK_STATUSES, tags=tags, agents=agents,
            unread=unread, next_cursor=next_cursor, now=now, me=me,
            sla_badge=lambda t: sla_badge(t, now),
            list_url=lambda **changes: list_url(bp.name, f, **changes),
            return_to=request.full_path,
        )

    @bp.route("/bulk", methods=["POST"])
    def bulk_action():
        state = get_state()
        m = state.models
        session = state.db.session
        actor = current_user._get_current_object()
        action = request.form.get("action", "")
        ticket_ids = [i for i in (_int(v) for v in request.form.getlist("ticket")) if i]
        kind, _, value = action.partition(":")
        tickets = bulk.visible_tickets(ticket_ids)
        options = {}
        if kind == "assign":
            assignee_id = parse_user_id(value)
            assignee = session.get(state.user_model, assignee_id) if assignee_id is not None else None
            if assignee is None:
                abort(400, description="unknown agent")
            # Tickets of mailboxes the assignee may not see are skipped by the service.
            options["assignee"] = assignee
        elif kind == "tag":
            tag = session.get(m.Tag, _int(value)) if _int(value) else None
            if tag is None:
                abort(400, description="unknown tag")
            options["tag"] = tag
        elif kind == "status" and value in BULK_STATUSES:
            kind = value
        elif kind not in ("unassign", "spam"):
            abort(400, description="unknown bulk action")
        changed = bulk.apply(kind, tickets, actor=actor, **options)
        session.commit()
        flash(f"{changed} ticket{'' if changed == 1 else 's'} updated.", "success")
        return redirect(_safe_return(bp.name, request.form.get("return_to")))


def _safe_return(bp_name: str, target: str | None) -> str:
    """Back to the list the form came from, never to another site or page."""
    index = url_for(f"{bp_name}.index")
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path == index:
            return target
    return index
