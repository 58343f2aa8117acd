"""Time-driven work, run by the scheduler's "timers" job (``flask inbox run-worker``).

- SLA breaches: one mail per ticket and target (to the assignee, or the admins when nobody
  is assigned) and an Activity, the moment a due time passes unmet.
- Auto-close: a *pending* ticket (we answered, the customer has not written back) of a
  mailbox with ``auto_close_days`` is closed that many days after its last message, with an
  optional closing message to the customer.

Everything reads the database (due times, statuses, dates), so a restart loses nothing: the
next run finds what is due. Snoozed tickets are woken by ``tickets.wake_snoozed`` (the
"wake" job) the same way. Each function takes ``now=`` and leaves the commit to the caller.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..extension import get_state
from ..models import utcnow
from . import sla
from .tickets import change_status, record_activity

log = logging.getLogger("shared_inbox.timers")

BATCH = 500


@dataclass
class TimerResult:
    breaches: list[tuple[int, str]] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    woken: list[int] = field(default_factory=list)


def check_breaches(now: datetime | None = None, limit: int = BATCH) -> list[tuple[int, str]]:
    """Notify every newly missed target; returns ``(ticket id, target)`` pairs."""
    state = get_state()
    m = state.models
    T = m.Ticket
    now = now or utcnow()
    tickets = list(state.db.session.scalars(
        sa.select(T).where(
            T.status.in_(sla.ACTIVE_STATUSES), T.sla_due_at.isnot(None), T.sla_due_at <= now,
            sa.or_(sa.and_(T.first_response_due_at <= now,
                           T.first_response_breached_at.is_(None)),
                   sa.and_(T.resolution_due_at <= now, T.resolution_breached_at.is_(None))))
        .order_by(T.sla_due_at, T.id).limit(limit)))
    found = []
    for ticket in tickets:
        if (ticket.first_response_due_at is not None and ticket.first_response_due_at <= now
                and ticket.first_response_breached_at is None and sla.response_pending(ticket)):
            sla.notify_breach(ticket, "first_response", ticket.first_response_due_at, now)
            ticket.first_response_breached_at = now
            found.append((ticket.id, "first_response"))
        if (ticket.resolution_due_at is not None and ticket.resolution_due_at <= now
                and ticket.resolution_breached_at is None and sla.resolution_pending(ticket)):
            sla.notify_breach(ticket, "resolution", ticket.resolution_due_at, now)
            ticket.resolution_breached_at = now
            found.append((ticket.id, "resolution"))
        sla.refresh_due(ticket)
    return found


def auto_close(now: datetime | None = None, limit: int = BATCH) -> list[int]:
    """Close pending tickets left without a customer reply for their mailbox's N days."""
    state = get_state()
    m = state.models
    session = state.db.session
    now = now or utcnow()
    closed = []
    mailboxes = list(session.scalars(
        sa.select(m.Mailbox).where(m.Mailbox.auto_close_days.isnot(None),
                                   m.Mailbox.auto_close_days > 0)))
    for mailbox in mailboxes:
        cutoff = now - timedelta(days=mailbox.auto_close_days)
        tickets = session.scalars(
            sa.select(m.Ticket).where(
                m.Ticket.mailbox_id == mailbox.id, m.Ticket.status == "pending",
                m.Ticket.merged_into_id.is_(None), m.Ticket.last_message_at <= cutoff)
            .order_by(m.Ticket.last_message_at, m.Ticket.id).limit(limit - len(closed)))
        for ticket in list(tickets):
            _close_one(ticket, mailbox, now)
            closed.append(ticket.id)
        if len(closed) >= limit:
            break
    return closed


def _close_one(ticket, mailbox, now: datetime) -> None:
    text = (mailbox.auto_close_message or "").strip()
    sent = False
    if text:
        from .replies import ReplyError, queue_reply

        try:  # queue_reply checks everything before it adds a row
            message = queue_reply(ticket, None, text, close=True)
            message.thread_reason = "auto-close message"
            message.headers = {**(message.headers or {}), "auto-submitted": "auto-generated"}
            sent = True
        except ReplyError as exc:  # e.g. no customer address: close without the message
            log.warning("auto-close of ticket %s: message not sent: %s", ticket.id, exc)
    if ticket.status != "closed":
        change_status(ticket, "closed", None)
    record_activity(ticket, "auto_closed", None, days=mailbox.auto_close_days, message=sent)


def run_timers(now: datetime | None = None) -> TimerResult:
    """Everything due at ``now``; the caller commits."""
    now = now or utcnow()
    return TimerResult(breaches=check_breaches(now), closed=auto_close(now))
