"""Ticket state changes; each writes an Activity row (who, what, when)."""
from __future__ import annotations

from ..extension import get_state
from ..models import STATUSES, utcnow


def record_activity(ticket, action: str, actor=None, **detail) -> None:
    state = get_state()
    state.db.session.add(
        state.models.Activity(ticket_id=ticket.id, actor=actor, action=action, detail=detail)
    )


def change_status(ticket, status: str, actor=None) -> bool:
    """Set the status; returns False when nothing changed."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if ticket.status == status:
        return False
    old = ticket.status
    ticket.status = status
    ticket.closed_at = utcnow() if status == "closed" else None
    if status != "open":
        ticket.snoozed_until = None
    record_activity(ticket, "status", actor, old=old, new=status)
    return True
