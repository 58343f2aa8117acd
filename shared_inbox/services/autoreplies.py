"""Automatic replies to customers: the acknowledgement of a new ticket, the out-of-hours
reply, and the one gate every automatic mail goes through (:func:`send_automatic_reply`).

Every automatic mail -- ours, the web form's confirmation, a rule's "send a saved reply" --
calls :func:`send_automatic_reply`, which applies the loop protection of
:mod:`shared_inbox.services.loop_guard` (never answer automatic, list or bounce mail, a null
Return-Path, no-reply senders or our own mailboxes; at most ``AUTOREPLY_SENDER_LIMIT`` per
address per hour) and the circuit breaker (a mailbox stops its automatic mail after
``AUTOREPLY_MAILBOX_LIMIT`` in an hour and the admins are told once). What it decided is
written to the ticket's activity either way, so an agent can see why a customer got -- or
did not get -- an automatic answer.

An automatic reply is an outbound message of the ticket, threaded under the customer's
mail, with the ticket token in its subject and ``Auto-Submitted: auto-replied`` (RFC 3834).
It is not an agent's answer: the ticket's status, first response time and "waiting" state
do not change.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from ..extension import get_state
from ..mail import send as mailsend
from ..models import utcnow
from . import loop_guard
from .replies import (new_message_id, reply_recipients, trim_references,
                      _with_signature)
from .saved_replies import placeholder_context, render_body
from .tickets import record_activity

DEFAULT_ACK_SUBJECT = "We received your message: {{ ticket.subject }}"
DEFAULT_ACK_TEXT = (
    "Hello {{ customer.first_name }},\n\n"
    "thank you for writing to {{ mailbox.name }}. We received your message and will answer "
    "as soon as we can.\n\n"
    "Your ticket number is #{{ ticket.number }}. To add anything, simply reply to this mail.\n"
)
DEFAULT_OOH_SUBJECT = "We received your message: {{ ticket.subject }}"
DEFAULT_OOH_TEXT = (
    "Hello {{ customer.first_name }},\n\n"
    "thank you for writing to {{ mailbox.name }}. Our team is away right now; we will answer "
    "your message when we are back.\n\n"
    "Your ticket number is #{{ ticket.number }}. To add anything, simply reply to this mail.\n"
)
AUTO_SUBMITTED = "auto-replied"


# -- the gate ---------------------------------------------------------------------------------
def _recipient(ticket, message) -> tuple[list[list[str]], str, str | None]:
    """(to, address, why not): the customer to answer, or why there is nobody to answer."""
    to = reply_recipients(ticket, message)
    sender = (message.from_email if message is not None else "") or (
        ticket.customer.email if ticket.customer is not None else "")
    why = loop_guard.address_reason(sender) if sender else None
    if why is None and to:
        why = loop_guard.address_reason(to[0][1])
    if not to and why is None:
        why = "no customer address"
    return to[:1], (to[0][1] if to else sender or ""), why


def _trip_breaker(mailbox, now: datetime) -> None:
    """Mark the breaker open and tell the admins -- once per trip, even with several workers."""
    state = get_state()
    m = state.models
    cutoff = now - loop_guard.WINDOW
    claimed = state.db.session.execute(
        sa.update(m.Mailbox).where(
            m.Mailbox.id == mailbox.id,
            sa.or_(m.Mailbox.autoreply_breaker_at.is_(None),
                   m.Mailbox.autoreply_breaker_at <= cutoff))
        .values(autoreply_breaker_at=now).execution_options(synchronize_session=False)
    ).rowcount == 1
    state.db.session.refresh(mailbox, ["autoreply_breaker_at"])
    if not claimed:
        return
    from ..config import cv
    from .notify import admin_recipients, queue_notification

    limit = int(cv("AUTOREPLY_MAILBOX_LIMIT"))
    queue_notification(
        admin_recipients(),
        f"Automatic replies of {mailbox.name} stopped: {limit} in the last hour",
        f"The mailbox {mailbox.name} <{mailbox.email_address}> sent {limit} automatic mails "
        "(acknowledgements, out-of-hours replies, contact-form confirmations, rule replies) "
        "in the last hour, which usually means a mail loop or a flood of messages.\n\n"
        "Its automatic mail is paused until fewer than that were sent in the past hour; "
        "customers' messages still arrive as tickets. Check the newest tickets of this "
        "mailbox and the auto-reply settings.\n",
        mailbox=mailbox, reason="autoreply_breaker")


def breaker_status(mailbox, now: datetime | None = None) -> dict:
    """For the settings page: is the breaker open, since when, and this hour's count."""
    now = now or utcnow()
    count = loop_guard.sent_by_mailbox(mailbox.id, now)
    from ..config import cv

    limit = int(cv("AUTOREPLY_MAILBOX_LIMIT"))
    tripped = mailbox.autoreply_breaker_at
    return {"open": count >= limit, "count": count, "limit": limit,
            "since": tripped if tripped is not None and tripped > now - loop_guard.WINDOW
            else None}


def withheld_reason(ticket, in_reply_to_message, *, now: datetime) -> str | None:
    """Why an automatic reply to this message must not be sent now (None: it may)."""
    why = loop_guard.message_reason(in_reply_to_message)
    if why:
        return why
    _, address, why = _recipient(ticket, in_reply_to_message)
    if why:
        return why
    return loop_guard.sender_limit_reason(address.lower(), now)


def send_automatic_reply(ticket, in_reply_to_message, subject: str | None, text: str, *,
                         reason: str, now: datetime | None = None):
    """Queue an automatic reply on ``ticket`` answering ``in_reply_to_message``, unless loop
    protection, the per-address limit or the circuit breaker forbid it.

    Returns the queued outbound message, or None when it was withheld. Writes an activity
    either way; adds rows to the session and never commits.
    """
    state = get_state()
    m = state.models
    session = state.db.session
    now = now or utcnow()
    mailbox = ticket.mailbox
    message = in_reply_to_message
    why = withheld_reason(ticket, message, now=now)
    if why is None and loop_guard.breaker_open(mailbox, now):
        _trip_breaker(mailbox, now)
        why = (f"circuit breaker: {mailbox.name} sent its maximum of automatic mails in the "
               "last hour")
    if why is None and not (text or "").strip():
        why = "the automatic reply's text is empty"
    if why is not None:
        record_activity(ticket, "auto_reply_withheld", reason=reason, why=why,
                        message=message.id if message is not None else None)
        return None

    to, address, _ = _recipient(ticket, message)
    in_reply_to, references, thread_index = "", [], None
    if message is not None and message.message_id:
        in_reply_to = message.message_id
        references = trim_references(message.reference_ids + [in_reply_to])
        thread_index = (message.headers or {}).get("thread-index")
    subject = (mailsend.subject_with_token(subject, ticket.number) if (subject or "").strip()
               else mailsend.reply_subject(ticket.subject, ticket.number))
    text = text.replace("\r\n", "\n")
    reply = m.Message(
        ticket_id=ticket.id, mailbox_id=mailbox.id, kind="outbound", author=None,
        from_name=(mailbox.from_name or mailbox.name)[:255], from_email=mailbox.email_address,
        to=to, cc=[], subject=subject[:998], message_id=new_message_id(mailbox),
        in_reply_to=in_reply_to, references=" ".join(references),
        headers={
            "thread-topic": mailsend.thread_topic(ticket.subject),
            "thread-index": mailsend.child_thread_index(thread_index) if thread_index
            else mailsend.new_thread_index(),
            "auto-submitted": AUTO_SUBMITTED,
            "_auto_reason": reason[:40],
        },
        body_text=_with_signature(text, mailbox), reply_text=text.strip(),
        send_status="queued", send_attempts=0, thread_reason=f"automatic reply ({reason})",
        date=now, created_at=now,
    )
    session.add(reply)
    session.flush()
    # Not an agent's answer: status, first response and "waiting" stay as they were.
    ticket.message_count = (ticket.message_count or 0) + 1
    loop_guard.record_sent(mailbox, ticket, address, reason, now)
    record_activity(ticket, "auto_reply_sent", reason=reason, to=address, message=reply.id)
    return reply


# -- the automation step ------------------------------------------------------------------------
def _is_open(mailbox, at: datetime) -> bool:
    try:
        from .business_hours import is_open
    except ImportError:  # business hours not installed: always open
        return True
    return is_open(mailbox, at)


def choose_template(mailbox, now: datetime) -> tuple[str, str, str] | None:
    """(kind, subject template, text template) for a new ticket now, or None for no reply.

    Out of hours the out-of-hours reply (when enabled) replaces the acknowledgement.
    """
    if mailbox.autoreply_ooh_enabled and not _is_open(mailbox, now):
        return ("out_of_hours", mailbox.autoreply_ooh_subject or DEFAULT_OOH_SUBJECT,
                mailbox.autoreply_ooh_text or DEFAULT_OOH_TEXT)
    if mailbox.autoreply_ack_enabled:
        return ("acknowledgement", mailbox.autoreply_ack_subject or DEFAULT_ACK_SUBJECT,
                mailbox.autoreply_ack_text or DEFAULT_ACK_TEXT)
    return None


def render(ticket, subject_template: str, text_template: str) -> tuple[str, str]:
    """The subject and text for this ticket, rendered in the saved replies' sandbox."""
    context = placeholder_context(ticket, None)
    subject = " ".join(render_body(subject_template, context).split())
    return subject, render_body(text_template, context)


def _answered_automatically(event) -> bool:
    """A rule already sent this message an automatic reply (one is enough)."""
    state = get_state()
    m = state.models
    rows = state.db.session.scalars(sa.select(m.Message).where(
        m.Message.ticket_id == event.ticket.id, m.Message.kind == "outbound",
        m.Message.id > event.message.id))
    return any((row.headers or {}).get("auto-submitted") for row in rows)


def on_inbound(event) -> None:
    """Automation step (see services.automation): acknowledge / out-of-hours reply.

    Only a new ticket is answered; not when a rule or the spam status said no, not when a
    rule already sent an automatic reply, and not a contact-form message (the form already
    sent its confirmation).
    """
    if not event.is_new_ticket:
        return
    if (event.message.headers or {}).get("_source") == "webform":
        return
    if _answered_automatically(event):
        event.done.append("acknowledgement skipped: already answered by a rule")
        return
    chosen = choose_template(event.mailbox, event.now)
    if chosen is None:
        return
    kind, subject_template, text_template = chosen
    if event.suppress_auto_reply:
        record_activity(event.ticket, "auto_reply_withheld", reason=kind,
                        why="a rule or the spam status asked for no automatic reply",
                        message=event.message.id)
        event.done.append(f"{kind} withheld")
        return
    subject, text = render(event.ticket, subject_template, text_template)
    sent = send_automatic_reply(event.ticket, event.message, subject, text, reason=kind,
                                now=event.now)
    event.done.append(kind if sent is not None else f"{kind} withheld")
