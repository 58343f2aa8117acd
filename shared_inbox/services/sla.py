"""SLA policies, ticket due times, their state, and escalation.

A policy (``InboxSlaPolicy``) gives targets in business minutes (the mailbox's business
hours, :mod:`services.business_hours`) to the tickets it matches by mailbox, priority and tag.
The most specific active policy wins (most criteria set), then the lowest position, then the
oldest. A ticket gets two due times:

- **first response** (``first_response_due_at``): met by a reply from an agent. Like Help
  Scout's reply time and Zendesk's "next reply time", the clock *restarts* when the customer
  writes again after we answered: each customer message that waits for us gets the target
  again (an out-of-office or a bounce does not). A ticket set to *pending* waits on the
  customer, so no response is due then.
- **resolution** (``resolution_due_at``): met by closing the ticket; counted from the
  ticket's creation while it is open or pending (like Zendesk's full resolution time, not
  paused while pending). When the customer reopens a closed ticket, it is a new request and
  the resolution clock restarts from that message.

``sla_due_at`` stores the earliest unmet due time (the inbox's "due soonest" sort and the
breach timer read it); :func:`refresh_due` keeps it right and is called wherever the inputs
change (inbound mail, status, tags, priority).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..config import cv
from ..extension import get_state
from ..models import utcnow
from . import business_hours as bh
from .tickets import record_activity

PRIORITIES = ("low", "normal", "high", "urgent")
#: Statuses in which the targets run.
ACTIVE_STATUSES = ("open", "pending")


# -- policies --------------------------------------------------------------------------------
def specificity(policy) -> int:
    return sum(x is not None for x in (policy.mailbox_id, policy.priority, policy.tag_id))


def active_policies() -> list:
    state = get_state()
    m = state.models
    return list(state.db.session.scalars(
        sa.select(m.SlaPolicy).where(m.SlaPolicy.is_active.is_(True))
        .order_by(m.SlaPolicy.position, m.SlaPolicy.id)))


def matching_policy(ticket, policies=None):
    """The policy for ``ticket``: most criteria matched, then position, then age; or None."""
    tag_ids = {tag.id for tag in ticket.tags}
    best = None
    for policy in active_policies() if policies is None else policies:
        if policy.mailbox_id is not None and policy.mailbox_id != ticket.mailbox_id:
            continue
        if policy.priority is not None and policy.priority != (ticket.priority or "normal"):
            continue
        if policy.tag_id is not None and policy.tag_id not in tag_ids:
            continue
        if best is None or specificity(policy) > specificity(best):
            best = policy  # policies come ordered by position, id: first wins a tie
    return best


def _due(mailbox, start: datetime | None, minutes: int | None) -> datetime | None:
    if start is None or not minutes:
        return None
    return bh.add_business_time(mailbox, start, minutes * 60)


# -- what is pending ---------------------------------------------------------------------------
def response_pending(ticket) -> bool:
    """The customer wrote last and the ticket is open: a reply is owed."""
    return (ticket.status == "open" and ticket.last_inbound_at is not None
            and (ticket.last_outbound_at is None
                 or ticket.last_outbound_at < ticket.last_inbound_at))


def resolution_pending(ticket) -> bool:
    return ticket.status in ACTIVE_STATUSES and ticket.merged_into_id is None


def next_due(ticket) -> datetime | None:
    """The earliest due time of a target not met yet."""
    return _earliest_due(ticket, ticket.first_response_due_at, ticket.resolution_due_at)


def refresh_due(ticket) -> None:
    ticket.sla_due_at = next_due(ticket)


def _earliest_due(ticket, first_response_due_at, resolution_due_at) -> datetime | None:
    """:func:`next_due` of ``ticket`` if it had these due times."""
    dues = []
    if first_response_due_at is not None and response_pending(ticket):
        dues.append(first_response_due_at)
    if resolution_due_at is not None and resolution_pending(ticket):
        dues.append(resolution_due_at)
    return min(dues) if dues else None


def soon_window() -> timedelta:
    return timedelta(minutes=float(cv("SLA_SOON_MINUTES")))


def sla_state(ticket, now: datetime | None = None) -> str | None:
    """None (no target running), "ok", "soon" (due within SLA_SOON_MINUTES) or "breached"."""
    due = next_due(ticket)
    if due is None:
        return None
    now = now or utcnow()
    if now >= due:
        return "breached"
    return "soon" if due - now <= soon_window() else "ok"


def describe_due(ticket, now: datetime | None = None) -> str:
    """Short text for a badge: "due in 2h", "due in 15 min", "breached 3h ago"."""
    due = next_due(ticket)
    if due is None:
        return ""
    now = now or utcnow()
    seconds = (due - now).total_seconds()
    text = _span(abs(seconds))
    return f"breached {text} ago" if seconds <= 0 else f"due in {text}"


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{max(minutes, 1)} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


# -- applying --------------------------------------------------------------------------------
def apply_policy(ticket, *, response_from: datetime | None, resolution_from: datetime | None,
                 policy=None) -> None:
    """Set the due times from the matching policy; ``None`` starts leave a clock as it is."""
    policy = matching_policy(ticket) if policy is None else policy
    ticket.sla_policy_id = policy.id if policy is not None else None
    mailbox = ticket.mailbox
    if response_from is not None:
        ticket.first_response_due_at = _due(
            mailbox, response_from, policy.first_response_minutes if policy else None)
        ticket.first_response_breached_at = None
    if resolution_from is not None:
        ticket.resolution_due_at = _due(
            mailbox, resolution_from, policy.resolution_minutes if policy else None)
        ticket.resolution_breached_at = None
    refresh_due(ticket)


def _reopened_by(ticket, message) -> bool:
    """Did this customer message reopen a closed ticket? (ingestion records "reopened"
    just before the "customer_replied" of the message)."""
    state = get_state()
    m = state.models
    recent = list(state.db.session.scalars(
        sa.select(m.Activity).where(m.Activity.ticket_id == ticket.id)
        .order_by(m.Activity.id.desc()).limit(10)))
    for newer, older in zip(recent, recent[1:]):
        if newer.action == "customer_replied" and (newer.detail or {}).get("message") == message.id:
            return older.action == "reopened" and (older.detail or {}).get("old") == "closed"
    return False


def _answered_before(ticket, message) -> bool:
    """Had an agent answered the customer's previous message before this one came?"""
    state = get_state()
    m = state.models
    previous = state.db.session.scalar(
        sa.select(sa.func.max(sa.func.coalesce(m.Message.date, m.Message.created_at)))
        .where(m.Message.ticket_id == ticket.id, m.Message.kind == "inbound",
               m.Message.is_automated.is_(False), m.Message.id != message.id))
    replied = state.db.session.scalar(
        sa.select(sa.func.max(sa.func.coalesce(m.Message.date, m.Message.created_at)))
        .where(m.Message.ticket_id == ticket.id, m.Message.kind == "outbound",
               m.Message.author_id.isnot(None), m.Message.id != message.id))
    return replied is not None and (previous is None or replied >= previous)


def on_inbound(event) -> None:
    """Automation step (see services.automation): set or restart the ticket's SLA clocks.

    New ticket: both clocks start when we received it. Existing ticket: the response clock
    restarts when the customer writes after an agent's reply; both restart when the message
    reopened a closed ticket. Automatic mail (out-of-office, bounces) changes nothing.
    """
    ticket, message = event.ticket, event.message
    if message is None or message.is_automated or ticket.status == "spam":
        refresh_due(ticket)
        return
    received = message.created_at or event.now
    if event.is_new_ticket:
        apply_policy(ticket, response_from=ticket.created_at or received,
                     resolution_from=ticket.created_at or received)
    elif _reopened_by(ticket, message):
        apply_policy(ticket, response_from=received, resolution_from=received)
    elif _answered_before(ticket, message):
        apply_policy(ticket, response_from=received, resolution_from=None)
    else:
        reevaluate(ticket)  # a rule may have changed the priority or the tags
        refresh_due(ticket)
    if ticket.sla_due_at is not None:
        event.done.append("sla")


def reevaluate(ticket) -> None:
    """Priority or tags changed: the matching policy may differ, so due times are computed
    again from the same starting points (creation, or the customer message that restarted
    the response clock). Closed tickets keep theirs."""
    if ticket.id is None or ticket.status not in ACTIVE_STATUSES:
        return
    policy = matching_policy(ticket)
    if (policy.id if policy else None) == ticket.sla_policy_id:
        return
    response_from, resolution_from = _starts(ticket, *_clock_starts([ticket.id]))
    apply_policy(ticket, response_from=response_from, resolution_from=resolution_from,
                 policy=policy)


def reapply_policies() -> int:
    """A policy was added, edited or deleted, or business hours or holidays changed: compute
    the due times of every open and pending ticket again, from the same clock starts.

    A target whose due time stays the same keeps its "breach mailed" mark, so nobody is
    mailed twice about one breach. Returns how many tickets got other due times. No commit.
    """
    state = get_state()
    m = state.models
    session = state.db.session
    policies = active_policies()
    changed = 0
    updates: list[dict] = []
    now = utcnow()
    active = (m.Ticket.status.in_(ACTIVE_STATUSES), m.Ticket.merged_into_id.is_(None))
    session.flush()  # pending changes first: the tickets are written below without the ORM
    tickets = session.scalars(
        sa.select(m.Ticket).where(*active)
        .options(sa.orm.selectinload(m.Ticket.tags), sa.orm.selectinload(m.Ticket.mailbox))
        .order_by(m.Ticket.id)).all()  # read fully: the clock queries below run meanwhile
    replied, answered_after, reopened = _clock_starts(sa.select(m.Ticket.id).where(*active))
    schedules: dict = {}
    for ticket in tickets:
        policy = matching_policy(ticket, policies)
        before = (ticket.first_response_due_at, ticket.resolution_due_at)
        if policy is None and ticket.sla_policy_id is None and before == (None, None):
            continue  # no target before, none now: nothing to compute
        breached = (ticket.first_response_breached_at, ticket.resolution_breached_at)
        if ticket.mailbox_id not in schedules:
            schedules[ticket.mailbox_id] = bh.schedule_for(ticket.mailbox)
        schedule = schedules[ticket.mailbox_id]
        response_from, resolution_from = _starts(ticket, replied, answered_after, reopened)
        values = {"sla_policy_id": policy.id if policy is not None else None,
                  "first_response_due_at": _due(
                      schedule, response_from, policy.first_response_minutes if policy else None),
                  "resolution_due_at": _due(
                      schedule, resolution_from, policy.resolution_minutes if policy else None)}
        values["first_response_breached_at"] = (
            breached[0] if values["first_response_due_at"] == before[0] else None)
        values["resolution_breached_at"] = (
            breached[1] if values["resolution_due_at"] == before[1] else None)
        values["sla_due_at"] = _earliest_due(ticket, values["first_response_due_at"],
                                             values["resolution_due_at"])
        if any(getattr(ticket, key) != value for key, value in values.items()):
            updates.append({"id": ticket.id, "updated_at": now, **values})
        changed += (values["first_response_due_at"], values["resolution_due_at"]) != before
    # One executemany by primary key instead of the unit of work's bookkeeping for every
    # ticket (seconds at a backlog of 20,000). The loaded tickets are stale now: refresh
    # them so the rest of the request sees the new due times.
    if updates:
        session.execute(sa.update(m.Ticket), updates)
        session.expire_all()
    return changed


def _clock_starts(ticket_ids) -> tuple[dict, dict, dict]:
    """For the tickets of ``ticket_ids`` (a subquery or a list): the last agent reply, the
    first customer message after it, and the last reopening, each ``{ticket id: time}``.
    The one definition of where the SLA clocks start, for one ticket or the backlog."""
    state = get_state()
    m = state.models
    session = state.db.session
    msg = m.Message
    last_reply = (sa.select(msg.ticket_id, sa.func.max(msg.created_at).label("at"))
                  .where(msg.ticket_id.in_(ticket_ids), msg.kind == "outbound",
                         msg.author_id.isnot(None))
                  .group_by(msg.ticket_id).subquery())
    replied = dict(session.execute(sa.select(last_reply.c.ticket_id, last_reply.c.at)).all())
    after = dict(session.execute(
        sa.select(msg.ticket_id, sa.func.min(msg.created_at))
        .join(last_reply, last_reply.c.ticket_id == msg.ticket_id)
        .where(msg.kind == "inbound", msg.is_automated.is_(False),
               msg.created_at > last_reply.c.at)
        .group_by(msg.ticket_id)).all())
    reopened = dict(session.execute(
        sa.select(m.Activity.ticket_id, sa.func.max(m.Activity.created_at))
        .where(m.Activity.ticket_id.in_(ticket_ids), m.Activity.action == "reopened")
        .group_by(m.Activity.ticket_id)).all())
    return replied, after, reopened


def _starts(ticket, replied: dict, answered_after: dict, reopened: dict) -> tuple:
    """(response clock start, resolution clock start) of ``ticket`` from
    :func:`_clock_starts`: the first customer message after our last reply (or the
    creation), and the last reopening (or the creation)."""
    response = ((answered_after.get(ticket.id) or ticket.created_at) if ticket.id in replied
                else ticket.created_at)
    return response, reopened.get(ticket.id) or ticket.created_at


def _response_clock_start(ticket) -> datetime | None:
    return _starts(ticket, *_clock_starts([ticket.id]))[0]


def _resolution_clock_start(ticket) -> datetime | None:
    return _starts(ticket, *_clock_starts([ticket.id]))[1]


def set_priority(ticket, priority: str, actor=None) -> bool:
    """Change the priority (Activity "priority") and re-evaluate the SLA; False if same."""
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}")
    if (ticket.priority or "normal") == priority:
        return False
    record_activity(ticket, "priority", actor, old=ticket.priority, new=priority)
    ticket.priority = priority
    reevaluate(ticket)
    return True


# -- escalation and breach mail ------------------------------------------------------------------
def recipients_for(ticket) -> list:
    """The assignee, or the admins when nobody is assigned."""
    from .notify import admin_recipients

    if ticket.assignee is not None:
        return [ticket.assignee]
    return admin_recipients()


def _ticket_url(ticket) -> str:
    from .webhooks import ticket_url

    try:
        return ticket_url(ticket)
    except Exception:  # no URL can be built (no request, no EXTERNAL_URL): mail without it
        return ""


def _customer(ticket) -> str:
    customer = ticket.customer
    if customer is None:
        return "unknown customer"
    return f"{customer.name} <{customer.email}>" if customer.name else customer.email


def escalate(ticket, actor=None, now: datetime | None = None):
    """Priority urgent, Activity "escalated", and a mail to the assignee (or the admins).

    Used by the rule action "escalate"; returns the queued notification (or None).
    """
    from .notify import queue_notification

    now = now or utcnow()
    set_priority(ticket, "urgent", actor)
    record_activity(ticket, "escalated", actor)
    url = _ticket_url(ticket)
    text = (f"Ticket #{ticket.number} was escalated and is now urgent.\n\n"
            f"Subject: {ticket.subject}\nCustomer: {_customer(ticket)}\n"
            f"Mailbox: {ticket.mailbox.name}\n" + (f"\n{url}\n" if url else ""))
    return queue_notification(recipients_for(ticket), f"[#{ticket.number}] Escalated: "
                              f"{ticket.subject}", text, ticket=ticket, reason="sla_escalated")


def notify_breach(ticket, target: str, due: datetime, now: datetime):
    """Mail about one missed target ("first_response" or "resolution") and record it."""
    from .notify import queue_notification

    what = "first response" if target == "first_response" else "resolution"
    url = _ticket_url(ticket)
    late = describe_due_span(now - due)
    text = (f"The {what} target of ticket #{ticket.number} was missed: it was due "
            f"{due:%Y-%m-%d %H:%M} UTC ({late} ago).\n\n"
            f"Subject: {ticket.subject}\nCustomer: {_customer(ticket)}\n"
            f"Mailbox: {ticket.mailbox.name}\n"
            f"Assignee: {_assignee_name(ticket)}\n" + (f"\n{url}\n" if url else ""))
    record_activity(ticket, "sla_breached", None, target=target,
                    due=due.isoformat(timespec="minutes"))
    return queue_notification(recipients_for(ticket),
                              f"[#{ticket.number}] SLA breached ({what}): {ticket.subject}",
                              text, ticket=ticket, reason="sla_breach")


def describe_due_span(delta: timedelta) -> str:
    return _span(abs(delta.total_seconds()))


def _assignee_name(ticket) -> str:
    if ticket.assignee is None:
        return "nobody"
    return get_state().extension.display_user(ticket.assignee).get("name") or "an agent"


# -- durations typed in the settings ---------------------------------------------------------------
_DURATION = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> int:
    """``"2h"``, ``"1h 30m"``, ``"90m"`` or ``"90"`` (minutes) -> minutes of business time."""
    text = (text or "").strip().lower()
    if text.isdigit():
        minutes = int(text)
    else:
        match = _DURATION.match(text)
        if not text or not match or not (match.group(1) or match.group(2)):
            raise ValueError("Write a duration like 2h, 1h 30m or 45m.")
        minutes = int(match.group(1) or 0) * 60 + int(match.group(2) or 0)
    if minutes <= 0:
        raise ValueError("The target must be at least one minute.")
    if minutes > 60 * 24 * 365:
        raise ValueError("The target can be at most a year of business time.")
    return minutes


def format_duration(minutes: int | None) -> str:
    if not minutes:
        return ""
    hours, rest = divmod(int(minutes), 60)
    return " ".join(part for part in (f"{hours}h" if hours else "", f"{rest}m" if rest else "")
                    if part)
