"""Ticket state changes; each writes an Activity row (who, what, when)."""
from __future__ import annotations

import sqlalchemy as sa

from .. import signals
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
    from .sla import refresh_due  # SLA: closing meets the resolution target (si0011)

    refresh_due(ticket)
    signals.send(signals.status_changed, ticket=ticket, actor=actor, old=old, new=status)
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


# --- Assignment -------------------------------------------------------------------------

class TicketActionError(ValueError):
    """An action on a ticket is refused; the message is shown to the agent."""


def _uid_str(user) -> str | None:
    from ..access import user_id

    return None if user is None else str(user_id(user))


def _name(user) -> str:
    return get_state().extension.display_user(user)["name"] if user is not None else ""


def may_see_mailbox(user, mailbox) -> bool:
    """Could this user work on tickets of the mailbox (an agent who is a member, or an admin)?"""
    from ..access import user_id

    state = get_state()
    ext = state.extension
    if user is None or not ext.is_agent(user):
        return False
    if ext.is_admin(user):
        return True
    m = state.models
    return state.db.session.scalar(sa.select(m.MailboxMember.id).where(
        m.MailboxMember.mailbox_id == mailbox.id,
        m.MailboxMember.user_id == user_id(user)).limit(1)) is not None


def assignable_agents(mailbox) -> list:
    """Everyone a ticket of ``mailbox`` may be assigned to: its members and the admins."""
    state = get_state()
    ext = state.extension
    m = state.models
    from ..models import user_primary_key
    from .admins import admin_ids

    pk = user_primary_key(state.user_model)
    # Members by a join, admins from the per-process list: never the whole user table (a
    # shop's customers may have accounts too).
    members = set(state.db.session.scalars(
        sa.select(m.MailboxMember.user_id).where(m.MailboxMember.mailbox_id == mailbox.id)))
    wanted = members | admin_ids()
    users = state.db.session.scalars(sa.select(state.user_model).where(pk.in_(wanted)))
    # Asked again for these few: the cached admin list may be up to a minute old.
    agents = [u for u in users if ext.is_agent(u)
              and (getattr(u, pk.key) in members or ext.is_admin(u))]
    return sorted(agents, key=lambda u: (ext.display_user(u)["name"] or "").lower())


def find_user(raw_id):
    """The host user whose primary key is ``raw_id`` (a form string), or None."""
    from ..models import user_primary_key

    state = get_state()
    pk = user_primary_key(state.user_model)
    try:
        value = pk.type.python_type(str(raw_id).strip())
    except (ValueError, TypeError, AttributeError, NotImplementedError):
        return None
    return state.db.session.get(state.user_model, value)


def assign(ticket, assignee, actor=None) -> bool:
    """Assign (or, with ``assignee=None``, unassign) the ticket; False when nothing changed.

    Refused (TicketActionError) when the assignee may not see the ticket's mailbox.
    """
    from ..access import user_id

    if assignee is not None and not may_see_mailbox(assignee, ticket.mailbox):
        raise TicketActionError(
            f"{_name(assignee)} cannot see the mailbox {ticket.mailbox.name}, so cannot be "
            "assigned this ticket. An admin can add them as a member first.")
    new_id = user_id(assignee) if assignee is not None else None
    if ticket.assignee_id == new_id:
        return False
    previous = ticket.assignee
    ticket.assignee_id = new_id
    ticket.assignee = assignee
    if assignee is None:
        action = "unassigned"
    elif previous is None:
        action = "assigned"
    else:
        action = "transferred"
    record_activity(ticket, action, actor, to=_uid_str(assignee), to_name=_name(assignee),
                    previous=_uid_str(previous), previous_name=_name(previous))
    signals.send(signals.ticket_assigned, ticket=ticket, actor=actor, assignee=assignee,
                 previous=previous)
    return True


# --- Snooze -----------------------------------------------------------------------------

def snooze(ticket, until, actor=None, now=None) -> None:
    """Hide the ticket until ``until`` (naive UTC, in the future); it stays open."""
    now = now or utcnow()
    if until is None or until <= now:
        raise TicketActionError("Choose a time in the future to snooze until.")
    if ticket.status != "open":
        change_status(ticket, "open", actor)
    ticket.snoozed_until = until
    record_activity(ticket, "snoozed", actor, until=until.isoformat(timespec="minutes"))


def unsnooze(ticket, actor=None) -> bool:
    if ticket.snoozed_until is None:
        return False
    ticket.snoozed_until = None
    record_activity(ticket, "unsnoozed", actor)
    return True


def wake_snoozed(now=None) -> list[int]:
    """Wake every ticket whose snooze has ended (Activity "woke"); the caller commits.

    Meant for a scheduler job; returns the ids of the tickets woken.
    """
    state = get_state()
    m = state.models
    now = now or utcnow()
    due = list(state.db.session.scalars(
        sa.select(m.Ticket).where(m.Ticket.snoozed_until.isnot(None),
                                  m.Ticket.snoozed_until <= now).order_by(m.Ticket.id)))
    for ticket in due:
        until = ticket.snoozed_until
        ticket.snoozed_until = None
        record_activity(ticket, "woke", None, until=until.isoformat(timespec="minutes"))
    return [t.id for t in due]


# --- Merge ------------------------------------------------------------------------------

class MergeError(TicketActionError):
    """The tickets cannot be merged (shown to the agent)."""


def merge_tickets(source, target, actor=None):
    """Move every message of ``source`` into ``target``; ``source`` is closed and points there.

    ``actor`` must be able to see the target's mailbox; a ticket they cannot see is
    reported exactly like one that does not exist.
    """
    from ..access import can_see_mailbox

    state = get_state()
    m = state.models
    session = state.db.session
    if target is None or (actor is not None and not can_see_mailbox(target.mailbox_id, actor)):
        raise MergeError("There is no such ticket.")
    if target.id == source.id:
        raise MergeError("A ticket cannot be merged into itself.")
    if source.merged_into_id is not None:
        raise MergeError(f"Ticket #{source.number} was already merged into "
                         f"#{source.merged_into_id}.")
    if target.merged_into_id is not None:
        raise MergeError(f"Ticket #{target.number} was itself merged into "
                         f"#{target.merged_into_id}; merge into that one.")
    moved = session.execute(
        sa.update(m.Message).where(m.Message.ticket_id == source.id)
        .values(ticket_id=target.id).execution_options(synchronize_session=False)).rowcount
    for tag in list(source.tags):
        if tag not in target.tags:
            target.tags.append(tag)
    session.flush()
    session.expire(source, ["messages"])
    session.expire(target, ["messages"])
    for msg in session.identity_map.values():
        if isinstance(msg, m.Message) and msg.ticket_id == source.id:
            session.expire(msg)
    source.merged_into_id = target.id
    if source.status != "closed":
        change_status(source, "closed", actor)
    source.snoozed_until = None
    if target.customer_id is None and source.customer_id is not None:
        target.customer_id = source.customer_id
    refresh_summary(source)
    refresh_summary(target)
    if source.message_count == 0:
        source.snippet = ""
    record_activity(source, "merged", actor, into=target.id, messages=moved)
    record_activity(target, "merged_from", actor, source=source.id, messages=moved)
    return target


# --- Ticket page helpers ----------------------------------------------------------------

def previous_conversations(ticket, user=None, limit: int = 10) -> list:
    """Other tickets of the same customer in mailboxes ``user`` may see, newest first."""
    from ..access import mailbox_filter

    if ticket.customer_id is None:
        return []
    state = get_state()
    m = state.models
    return list(state.db.session.scalars(
        sa.select(m.Ticket).where(m.Ticket.customer_id == ticket.customer_id,
                                  m.Ticket.id != ticket.id,
                                  mailbox_filter(m.Ticket.mailbox_id, user))
        .order_by(m.Ticket.last_message_at.desc(), m.Ticket.id.desc()).limit(limit)))


def newest_message_id(ticket) -> int:
    """Id of the newest message of the ticket (0 when none): what a page "has seen"."""
    state = get_state()
    m = state.models
    return state.db.session.scalar(
        sa.select(sa.func.max(m.Message.id)).where(m.Message.ticket_id == ticket.id)) or 0


def has_newer_messages(ticket, seen_message_id) -> list:
    """Messages of the ticket that arrived after the page showing ``seen_message_id``.

    ``seen_message_id`` is the page's ``newest_message_id`` (a form string or int; 0 when
    the page showed no message). An unreadable value returns [] (nothing can be said).
    """
    try:
        seen = int(str(seen_message_id).strip())
    except (TypeError, ValueError):
        return []
    state = get_state()
    m = state.models
    return list(state.db.session.scalars(
        sa.select(m.Message).where(m.Message.ticket_id == ticket.id, m.Message.id > seen)
        .order_by(m.Message.id)))
