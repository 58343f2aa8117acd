"""The inbox list: folders with counts, filters, sorts, search, keyset pagination, bulk actions.

A page costs a constant number of queries whatever its size: the visible mailboxes, one
grouped query for every folder count (per mailbox), the page of tickets and one
``selectinload`` per relation shown, one query for the agent's unread state, the tags and
the agents offered in the filters.
"""
from __future__ import annotations

import uuid
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
from ..services.search import matching_ticket_ids

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

SORTS = [("newest", "Newest"), ("oldest", "Oldest"), ("waiting", "Waiting longest")]

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

    Only four aggregates per group, folded into the eight folders here; the query must
    agree with :func:`folder_conditions` (tests compare both).
    """
    T = m.Ticket
    snoozed = T.snoozed_until > now
    awake = sa.or_(T.snoozed_until.is_(None), T.snoozed_until <= now)
    rows = get_state().db.session.execute(
        sa.select(T.status, T.mailbox_id, sa.func.count(),
                  sa.func.sum(sa.case((sa.and_(T.assignee_id.is_(None), awake), 1), else_=0)),
                  sa.func.sum(sa.case((T.assignee_id == me, 1), else_=0)),
                  sa.func.sum(sa.case((snoozed, 1), else_=0)))
        .where(*where).group_by(T.status, T.mailbox_id)
    ).all()
    out: dict = {}
    for status, mailbox, total, unassigned, mine, n_snoozed in rows:
        total, unassigned, mine, n_snoozed = (int(v or 0) for v in (total, unassigned, mine,
                                                                     n_snoozed))
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
    return out


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
        if sort == "waiting":
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

        # Every folder's count, per mailbox, in one grouped query (index-only scan).
        per_mailbox = folder_counts(m, base, me, now)
        mailbox_id = f["mailbox"]
        counts = {key: sum(c[key] for mb, c in per_mailbox.items()
                           if not mailbox_id or mb == mailbox_id) for key, _ in FOLDERS}

        where = [*base, conditions[folder]]
        if mailbox_id:
            where.append(m.Ticket.mailbox_id == mailbox_id)
        if f["status"]:
            where.append(m.Ticket.status == f["status"])
        if f["tag"]:
            where.append(m.Ticket.id.in_(
                sa.select(m.ticket_tags.c.ticket_id).where(m.ticket_tags.c.tag_id == f["tag"])))
        if f["assignee"] == "none":
            where.append(m.Ticket.assignee_id.is_(None))
        elif f["assignee"]:
            assignee = parse_user_id(f["assignee"])
            where.append(m.Ticket.assignee_id == assignee if assignee is not None
                         else sa.false())
        if f["q"]:
            hits = matching_ticket_ids(f["q"], m, dialect)
            if hits is not None:
                where.append(m.Ticket.id.in_(hits))

        sort = f["sort"]
        keys = sort_keys(sort, m)
        page_size = max(1, int(cv("PAGE_SIZE")))
        cursor = parse_cursor(sort, request.args.get("after"))
        if cursor:
            where.append(after_cursor(keys, cursor))
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
