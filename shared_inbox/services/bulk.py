"""Bulk actions from the inbox list: each goes through the ticket services and writes one
Activity row per ticket it changes. Tickets the agent may not see are never touched."""
from __future__ import annotations

import sqlalchemy as sa

from ..access import mailbox_filter
from ..extension import get_state
from . import tags as tag_service
from .tickets import TicketActionError, assign, change_status

ACTIONS = ("assign", "unassign", "tag", "open", "pending", "closed", "spam")


def visible_tickets(ticket_ids, user=None) -> list:
    """The tickets among ``ticket_ids`` the user may see (merged ones excluded)."""
    ids = sorted({int(i) for i in ticket_ids})
    if not ids:
        return []
    state = get_state()
    m = state.models
    return list(state.db.session.scalars(
        sa.select(m.Ticket)
        .where(m.Ticket.id.in_(ids), m.Ticket.merged_into_id.is_(None),
               mailbox_filter(m.Ticket.mailbox_id, user))
        .options(sa.orm.selectinload(m.Ticket.tags))
        .order_by(m.Ticket.id)
    ))


def apply(action: str, tickets, *, actor=None, assignee=None, tag=None) -> int:
    """Apply ``action`` to each ticket with the same services as the ticket page; returns
    how many changed (caller commits). Tickets the assignee may not see are skipped."""
    if action not in ACTIONS:
        raise ValueError(f"unknown bulk action {action!r}")
    changed = 0
    for ticket in tickets:
        if action == "assign":
            try:
                done = assign(ticket, assignee, actor)
            except TicketActionError:
                done = False
        elif action == "unassign":
            done = assign(ticket, None, actor)
        elif action == "tag":
            done = tag_service.add_tag(ticket, tag.name, actor)[1]
        else:
            done = change_status(ticket, action, actor)
        changed += bool(done)
    return changed
