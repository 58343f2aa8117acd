"""What happens after a customer's mail is stored: rules, auto-replies, SLA clocks, signals.

Ingestion only marks a new inbound message for automation (``automation_state`` ``"new"``
when it opened a ticket, ``"reply"`` when it joined one; ``"skipped"`` for imported history
and unreadable mail). :func:`process_pending` then runs the steps for each marked message in
a transaction of its own, *after* the mail itself is safely committed:

- the claim (``UPDATE ... SET automation_state='done' WHERE automation_state IN (new,
  reply)``) is part of that same transaction, so the steps' effects (tags, an auto-reply in
  the outbox, due times, webhook rows) commit together with "done" -- or, after a crash,
  not at all and the message is still pending: each message is automated exactly once,
  however many workers run this;
- a step that raises rolls back only this message's automation; the message is marked
  ``"failed"``, the error is logged and written to the ticket's activity, the mail stays.

Steps run in a fixed order: rules first (they may tag, assign, mark spam or ask for no
auto-reply), then auto-replies (which respect what rules decided), then SLA due times.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from .. import signals
from ..extension import get_state
from ..models import utcnow
from .tickets import record_activity

log = logging.getLogger("shared_inbox.automation")

PENDING = ("new", "reply")


@dataclass
class InboundEvent:
    """One customer message being automated; steps read it and may set the flags."""

    message: object
    ticket: object
    mailbox: object
    customer: object | None
    is_new_ticket: bool
    now: datetime
    #: A rule (or the spam status) said: send no automatic reply to this message.
    suppress_auto_reply: bool = False
    #: What the steps did, for the caller and for tests (``"rule:VIP tag"``, ``"ack"``...).
    done: list[str] = field(default_factory=list)


def _steps():
    from . import autoreplies, rules, sla

    return (rules.on_inbound, autoreplies.on_inbound, sla.on_inbound)


def pending_state(*, new_ticket: bool, imported: bool) -> str:
    """The ``automation_state`` a freshly ingested inbound message starts with."""
    if imported:
        return "skipped"
    return "new" if new_ticket else "reply"


def pending_ids(limit: int = 200, mailbox_id: int | None = None) -> list[int]:
    state = get_state()
    m = state.models
    # Mail whose body is still to be parsed (services/complete.py) waits: rules read it.
    query = (sa.select(m.Message.id).where(m.Message.automation_state.in_(PENDING),
                                           m.Message.body_pending.is_(False))
             .order_by(m.Message.id).limit(limit))
    if mailbox_id is not None:
        query = query.where(m.Message.mailbox_id == mailbox_id)
    return list(state.db.session.scalars(query))


def process_pending(limit: int = 200, *, mailbox_id: int | None = None,
                    now: datetime | None = None) -> list[InboundEvent]:
    """Automate every pending inbound message (oldest first); returns the events run."""
    state = get_state()
    session = state.db.session
    ids = pending_ids(limit, mailbox_id)
    session.commit()
    events = []
    for message_id in ids:
        event = process_one(message_id, now=now)
        if event is not None:
            events.append(event)
    return events


def process_one(message_id: int, *, now: datetime | None = None) -> InboundEvent | None:
    """Claim and automate one message; None when another worker had it (or it is not pending)."""
    state = get_state()
    m = state.models
    session = state.db.session
    original = session.scalar(sa.select(m.Message.automation_state)
                              .where(m.Message.id == message_id))
    claimed = session.execute(
        sa.update(m.Message)
        .where(m.Message.id == message_id, m.Message.automation_state.in_(PENDING))
        .values(automation_state="done")
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if not claimed:
        session.rollback()
        return None
    message = session.get(m.Message, message_id)
    session.refresh(message)
    ticket = message.ticket
    event = InboundEvent(
        message=message, ticket=ticket, mailbox=ticket.mailbox, customer=ticket.customer,
        is_new_ticket=original == "new", now=now or utcnow(),
        suppress_auto_reply=ticket.status == "spam",
    )
    try:
        for step in _steps():
            step(event)
        if event.is_new_ticket:
            signals.send(signals.ticket_created, ticket=ticket, message=message)
        signals.send(signals.message_received, ticket=ticket, message=message)
        session.commit()
    except Exception as exc:
        session.rollback()
        log.exception("automation failed for message %s", message_id)
        message = session.get(m.Message, message_id)
        message.automation_state = "failed"
        record_activity(message.ticket, "automation_failed", None, message=message_id,
                        error=f"{type(exc).__name__}: {exc}"[:500])
        session.commit()
        return None
    return event
