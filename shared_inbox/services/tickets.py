"""Ticket state changes; each writes an Activity row (who, what, when)."""
from __future__ import annotations

import sqlalchemy as sa

from ..extension import get_state
from ..models import STATUSES, utcnow

SNIPPET_LENGTH = 200


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


def snippet_of(text: str) -> str:
    return " ".join((text or "").split())[:SNIPPET_LENGTH]


def refresh_summary(ticket) -> None:
    """Recompute the ticket's denormalized list columns from its messages."""
    state = get_state()
    m = state.models
    messages = list(state.db.session.scalars(
        sa.select(m.Message).where(m.Message.ticket_id == ticket.id, m.Message.kind != "note")
        .order_by(m.Message.date, m.Message.id)))
    ticket.message_count = len(messages)
    if not messages:
        return
    last = messages[-1]
    ticket.snippet = snippet_of(last.reply_text or last.body_text)
    ticket.last_message_at = last.date or last.created_at
    inbound = [msg.date or msg.created_at for msg in messages
               if msg.kind == "inbound" and not msg.is_automated]
    outbound = [msg.date or msg.created_at for msg in messages if msg.kind == "outbound"]
    ticket.last_inbound_at = max(inbound) if inbound else None
    ticket.last_outbound_at = max(outbound) if outbound else None


class SplitError(ValueError):
    """The message cannot be split off (shown to the agent)."""


def split_message(message, actor=None):
    """Move a wrongly attached customer message into a ticket of its own.

    Later replies to it follow it there, because threading looks up the ticket of the
    Message-ID they answer.
    """
    state = get_state()
    m = state.models
    session = state.db.session
    old = message.ticket
    if message.kind != "inbound":
        raise SplitError("only a customer's message can be split into its own ticket")
    if session.scalar(sa.select(sa.func.count(m.Message.id)).where(
            m.Message.ticket_id == old.id, m.Message.kind != "note")) < 2:
        raise SplitError("this is the only message of the ticket")
    from .customers import get_or_create_customer

    date = message.date or message.created_at
    customer = get_or_create_customer(message.from_email, message.from_name) \
        if message.from_email else old.customer
    new = m.Ticket(mailbox_id=old.mailbox_id, customer_id=customer.id if customer else None,
                   subject=message.subject or old.subject, status="open", created_at=date,
                   last_message_at=date)
    session.add(new)
    session.flush()
    message.ticket_id = new.id
    message.thread_reason = f"split from #{old.id}"
    session.flush()
    session.expire(old, ["messages"])
    refresh_summary(old)
    refresh_summary(new)
    record_activity(old, "split", actor, message=message.id, new_ticket=new.id)
    record_activity(new, "split_from", actor, message=message.id, old_ticket=old.id)
    return new
