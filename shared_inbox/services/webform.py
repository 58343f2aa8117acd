"""The contact form channel: a submission becomes a ticket, like a mail would.

A submission opens a new ticket in the form's mailbox with one inbound message (Message-ID of
our own, ``headers["_source"] = "webform"``), queues a confirmation to the customer through
the same gate as every automatic mail (:func:`services.autoreplies.send_automatic_reply`:
it threads under the submission, carries the ``[#n]`` token and ``Auto-Submitted``, and
nobody can use the form to flood an address), and is then automated like mail (rules,
SLA; the acknowledgement is skipped because the confirmation is one).

Abuse protection lives here too: a per-IP rate limit counted in the database (so it holds
across web workers) and the size limits of the text and the files.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from ..config import cv
from ..extension import get_state
from ..models import utcnow
from .automation import pending_state
from .customers import get_or_create_customer
from .replies import _store_attachments, new_message_id
from .tickets import record_activity, snippet_of

RATE_WINDOW = timedelta(hours=1)
MAX_NAME = 120
MAX_SUBJECT = 200
REASON = "webform confirmation"


class UnknownForm(LookupError):
    """No mailbox takes contact-form submissions under this slug."""


def _mailbox_by(value):
    state = get_state()
    m = state.models
    if value is None or value == "":
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        mailbox = state.db.session.get(m.Mailbox, int(value))
    else:
        mailbox = state.db.session.scalar(
            sa.select(m.Mailbox).where(sa.func.lower(m.Mailbox.email_address)
                                       == str(value).strip().lower()))
    return mailbox if mailbox is not None and mailbox.is_active else None


def form_mailbox(slug: str | None = None):
    """The mailbox a submission goes to: the slug's (``WEBFORM_MAILBOXES``) or the default
    (``WEBFORM_MAILBOX``, else the first active mailbox). Raises UnknownForm."""
    state = get_state()
    m = state.models
    if slug:
        allowed = cv("WEBFORM_MAILBOXES") or {}
        if slug not in allowed:
            raise UnknownForm(slug)
        mailbox = _mailbox_by(allowed[slug])
    elif cv("WEBFORM_MAILBOX") not in (None, ""):
        mailbox = _mailbox_by(cv("WEBFORM_MAILBOX"))
    else:
        mailbox = state.db.session.scalar(
            sa.select(m.Mailbox).where(m.Mailbox.is_active.is_(True))
            .order_by(m.Mailbox.id).limit(1))
    if mailbox is None:
        raise UnknownForm(slug or "")
    return mailbox


# -- rate limit -------------------------------------------------------------------------------
def rate_limited(ip: str, now: datetime | None = None) -> bool:
    """True when ``ip`` already made ``WEBFORM_RATE_LIMIT`` submissions in the last hour."""
    state = get_state()
    m = state.models
    now = now or utcnow()
    count = state.db.session.scalar(
        sa.select(sa.func.count()).select_from(m.WebformHit).where(
            m.WebformHit.ip == (ip or "")[:64], m.WebformHit.created_at > now - RATE_WINDOW,
            m.WebformHit.created_at <= now))
    return (count or 0) >= int(cv("WEBFORM_RATE_LIMIT"))


def record_hit(ip: str, now: datetime | None = None):
    """Count one submission of ``ip`` (and forget hits older than the window)."""
    state = get_state()
    m = state.models
    now = now or utcnow()
    state.db.session.execute(sa.delete(m.WebformHit).where(
        m.WebformHit.created_at <= now - RATE_WINDOW))
    hit = m.WebformHit(ip=(ip or "")[:64], created_at=now)
    state.db.session.add(hit)
    return hit


def claim_slot(ip: str, now: datetime | None = None) -> bool:
    """Take one of the hour's submissions of ``ip``; False when they are used up.

    The hit is committed *before* counting, so two web workers racing for the last slot
    both see each other and at most the limit gets through (a refused claim is undone).
    """
    state = get_state()
    now = now or utcnow()
    hit = record_hit(ip, now)
    state.db.session.commit()
    count = state.db.session.scalar(
        sa.select(sa.func.count()).select_from(state.models.WebformHit).where(
            state.models.WebformHit.ip == (ip or "")[:64],
            state.models.WebformHit.created_at > now - RATE_WINDOW,
            state.models.WebformHit.created_at <= now))
    if (count or 0) <= int(cv("WEBFORM_RATE_LIMIT")):
        return True
    state.db.session.delete(hit)
    state.db.session.commit()
    return False


# -- the ticket -------------------------------------------------------------------------------
def confirmation_text(ticket, name: str, text: str) -> str:
    first = (name or "").split()[0] if (name or "").split() else ""
    quoted = "\n".join("> " + line for line in text.strip().splitlines())
    return (
        f"Hello {first or 'there'},\n\n"
        f"thank you for contacting {ticket.mailbox.name}. We received your message and will "
        "answer by email as soon as we can.\n\n"
        f"Your ticket number is #{ticket.number}. To add anything, simply reply to this "
        "mail.\n\n"
        f"Your message:\n\n{quoted}\n"
    )


def create_ticket(mailbox, *, name: str, email: str, subject: str, text: str, uploads=(),
                  now: datetime | None = None):
    """Open the ticket and queue the confirmation; returns ``(ticket, message, confirmation)``
    (confirmation None when loop protection withheld it). Adds to the session; the caller
    commits and then runs ``automation.process_one(message.id)``."""
    state = get_state()
    m = state.models
    session = state.db.session
    now = now or utcnow()
    text = text.replace("\r\n", "\n")
    # A public form must not rename a customer we know: only an empty name is filled in.
    customer = get_or_create_customer(email, "")
    if not customer.name:
        customer.name = name[:255]
    ticket = m.Ticket(mailbox_id=mailbox.id, customer_id=customer.id,
                      subject=subject[:998] or "(no subject)", status="open",
                      created_at=now, last_message_at=now, last_inbound_at=now,
                      message_count=1, snippet=snippet_of(text))
    session.add(ticket)
    session.flush()
    message = m.Message(
        ticket_id=ticket.id, mailbox_id=mailbox.id, kind="inbound",
        from_name=name[:255], from_email=customer.email[:320],
        to=[[mailbox.name, mailbox.email_address]], cc=[], subject=subject[:998],
        message_id=new_message_id(mailbox), headers={"_source": "webform"},
        body_text=text, reply_text=text.strip(), thread_reason="contact form",
        automation_state=pending_state(new_ticket=True, imported=False),
        date=now, created_at=now,
    )
    _store_attachments(message, uploads)
    session.add(message)
    session.flush()
    record_activity(ticket, "created", mailbox=mailbox.email_address, source="contact form")
    from .autoreplies import send_automatic_reply

    confirmation = send_automatic_reply(ticket, message, None,
                                        confirmation_text(ticket, name, text),
                                        reason=REASON, now=now)
    return ticket, message, confirmation
