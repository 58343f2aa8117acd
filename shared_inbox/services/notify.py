"""Mail to the team (not to customers): SLA breaches, the auto-reply circuit breaker, rule
notifications, the weekly summary.

:func:`queue_notification` adds an ``InboxNotification`` row to the current transaction; the
outbox (:func:`shared_inbox.services.outbox.deliver_due`) sends it with the same claims,
retries and back-off as replies. Nothing here talks SMTP.
"""
from __future__ import annotations

import sqlalchemy as sa

from ..config import cv
from ..extension import get_state
from ..models import utcnow

def _pairs(recipients) -> list[list[str]]:
    """``["a@x", ("Name", "b@x"), user]`` -> ``[["", "a@x"], ["Name", "b@x"], [name, email]]``."""
    display = get_state().extension.display_user
    out, seen = [], set()
    for r in recipients:
        if isinstance(r, str):
            name, email = "", r
        elif isinstance(r, (tuple, list)):
            name, email = r[0], r[1]
        else:
            info = display(r)
            name, email = info.get("name") or "", info.get("email") or ""
        email = (email or "").strip()
        if email and email.lower() not in seen:
            seen.add(email.lower())
            out.append([name or "", email])
    return out


def admin_recipients() -> list[list[str]]:
    """Who gets admin mail: ``SHARED_INBOX_ADMIN_EMAILS`` when set, else the host users for
    whom the ``admin_loader`` (and ``agent_loader``) says yes (``services/admins.py``)."""
    configured = cv("ADMIN_EMAILS")
    if configured:
        if isinstance(configured, str):
            configured = [a.strip() for a in configured.split(",")]
        return _pairs([a for a in configured if a])
    from .admins import admin_users

    return _pairs(admin_users())


def default_mailbox():
    """The SMTP account used when a notification has no mailbox of its own."""
    state = get_state()
    m = state.models
    return state.db.session.scalar(
        sa.select(m.Mailbox).where(m.Mailbox.is_active.is_(True)).order_by(m.Mailbox.id).limit(1))


def queue_notification(recipients, subject: str, text: str, *, html: str | None = None,
                       ticket=None, mailbox=None, reason: str = ""):
    """Queue a mail to ``recipients`` (addresses, ``(name, address)`` pairs or host users).

    Returns the row, or None when there is nobody to tell or no mailbox to send from.
    """
    state = get_state()
    to = _pairs(recipients)
    if mailbox is None:
        mailbox = ticket.mailbox if ticket is not None else default_mailbox()
    if not to or mailbox is None:
        return None
    row = state.models.Notification(
        mailbox_id=mailbox.id, ticket_id=ticket.id if ticket is not None else None,
        reason=reason[:40], to=to, subject=subject[:998], body_text=text, body_html=html,
        send_status="queued", send_attempts=0, created_at=utcnow(),
    )
    state.db.session.add(row)
    return row
