"""The inbox list: folders, mailbox filter, keyset pagination."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask import abort, render_template, request
from flask_login import current_user

from ..access import mailbox_filter, user_id, visible_mailboxes
from ..config import cv
from ..extension import get_state
from ..models import utcnow

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


def folder_condition(folder: str, m, me):
    now = utcnow()
    awake = sa.or_(m.Ticket.snoozed_until.is_(None), m.Ticket.snoozed_until <= now)
    conditions = {
        "unassigned": sa.and_(m.Ticket.status == "open", m.Ticket.assignee_id.is_(None), awake),
        "mine": sa.and_(m.Ticket.status.in_(("open", "pending")), m.Ticket.assignee_id == me),
        "assigned": sa.and_(m.Ticket.status == "open", m.Ticket.assignee_id.isnot(None), awake),
        "open": sa.and_(m.Ticket.status == "open", awake),
        "pending": m.Ticket.status == "pending",
        "snoozed": sa.and_(m.Ticket.status == "open", m.Ticket.snoozed_until > now),
        "closed": m.Ticket.status == "closed",
        "spam": m.Ticket.status == "spam",
    }
    if folder not in conditions:
        abort(404)
    return conditions[folder]


def _cursor(value: str | None):
    """Keyset cursor "<iso timestamp>_<id>": constant cost on any page."""
    if not value:
        return None
    try:
        stamp, ticket_id = value.rsplit("_", 1)
        return datetime.fromisoformat(stamp), int(ticket_id)
    except ValueError:
        abort(400, description="bad page cursor")


def register(bp):
    @bp.route("/")
    def index():
        state = get_state()
        m = state.models
        session = state.db.session
        folder = request.args.get("folder", "open")
        mailbox_id = request.args.get("mailbox", type=int)
        me = user_id(current_user)
        visible = mailbox_filter(m.Ticket.mailbox_id)
        scope = [visible]
        if mailbox_id:
            scope.append(m.Ticket.mailbox_id == mailbox_id)

        counts = {}
        for key, _label in FOLDERS:
            counts[key] = session.scalar(
                sa.select(sa.func.count(m.Ticket.id)).where(
                    *scope, folder_condition(key, m, me))
            )

        page_size = cv("PAGE_SIZE")
        query = (
            sa.select(m.Ticket)
            .where(*scope, folder_condition(folder, m, me))
            .options(sa.orm.selectinload(m.Ticket.customer), sa.orm.selectinload(m.Ticket.tags),
                     sa.orm.selectinload(m.Ticket.assignee), sa.orm.selectinload(m.Ticket.mailbox))
            .order_by(m.Ticket.last_message_at.desc(), m.Ticket.id.desc())
            .limit(page_size + 1)
        )
        cursor = _cursor(request.args.get("after"))
        if cursor:
            stamp, last_id = cursor
            query = query.where(sa.or_(
                m.Ticket.last_message_at < stamp,
                sa.and_(m.Ticket.last_message_at == stamp, m.Ticket.id < last_id),
            ))
        tickets = list(session.scalars(query))
        next_cursor = None
        if len(tickets) > page_size:
            tickets = tickets[:page_size]
            last = tickets[-1]
            next_cursor = f"{last.last_message_at.isoformat()}_{last.id}"
        return render_template(
            "shared_inbox/inbox.html", tickets=tickets, folders=FOLDERS, counts=counts,
            folder=folder, mailboxes=visible_mailboxes(), mailbox_id=mailbox_id,
            next_cursor=next_cursor, now=utcnow(),
        )
