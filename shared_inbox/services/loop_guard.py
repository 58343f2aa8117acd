"""Loop protection: may we send an automatic mail (acknowledgement, out-of-hours reply, web
form confirmation, a rule's saved reply) to this address, in answer to this message?

What the mail itself says is decided once, at ingestion, by :mod:`shared_inbox.mail.classify`
(auto-submitted per RFC 3834, ``Precedence: bulk/list/junk``, ``List-*``, bounces and
delivery reports, ``X-Auto-Response-Suppress``); its verdict is stored in
``message.headers["_classification"]`` and read here. On top of that this module checks
what only the help desk knows:

- a null ``Return-Path`` (RFC 3834 section 2: never answer it), no-reply style senders and
  our own mailboxes (answering them would mail ourselves or a robot);
- how many automatic mails one address got in the last hour (``AUTOREPLY_SENDER_LIMIT``):
  two help desks answering each other stop after a few rounds;
- the circuit breaker: a mailbox that sent ``AUTOREPLY_MAILBOX_LIMIT`` automatic mails in
  the last hour stops sending them (see :mod:`shared_inbox.services.autoreplies`).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..config import cv
from ..extension import get_state

WINDOW = timedelta(hours=1)

_NOREPLY = re.compile(
    r"(?:^|[-_.+])(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|no[-_.]?response)(?:$|[-_.+])"
    r"|^(?:mailer[-_.]?daemon|postmaster|bounces?|auto[-_.]?(?:reply|responder))(?:$|[-_.+])",
    re.IGNORECASE,
)
_NULL_PATH = re.compile(r"^\s*<\s*>\s*$")


def is_noreply_address(address: str) -> bool:
    local = (address or "").rpartition("@")[0]
    return bool(local and _NOREPLY.search(local))


def own_addresses() -> set[str]:
    state = get_state()
    return {a.lower() for a in state.db.session.scalars(
        sa.select(state.models.Mailbox.email_address))}


def message_reason(message) -> str | None:
    """Why ``message`` must get no automatic answer (None: it may)."""
    if message is None:
        return None
    if getattr(message, "is_imported", False):
        return "imported history"
    headers = message.headers or {}
    verdict = headers.get("_classification") or {}
    if verdict.get("suppress_autoreply") or message.is_automated or message.is_bounce:
        reasons = [r for r in verdict.get("reasons") or [] if r]
        what = "a bounce" if message.is_bounce else "automatic or list mail"
        return f"{what} ({'; '.join(reasons[:3])})" if reasons else what
    return_path = headers.get("return-path")
    if return_path is not None and _NULL_PATH.match(return_path):
        return "null Return-Path <>"
    return None


def address_reason(address: str) -> str | None:
    """Why ``address`` must get no automatic mail (None: it may)."""
    address = (address or "").strip().lower()
    if "@" not in address:
        return "no customer address"
    if address in own_addresses():
        return f"{address} is one of our own mailboxes"
    if is_noreply_address(address):
        return f"{address} is a no-reply address"
    return None


def sent_to(address: str, now: datetime) -> int:
    """Automatic mails ``address`` got in the hour before ``now``."""
    state = get_state()
    m = state.models
    return state.db.session.scalar(
        sa.select(sa.func.count()).select_from(m.AutoMail).where(
            m.AutoMail.recipient == address.strip().lower()[:320],
            m.AutoMail.created_at > now - WINDOW, m.AutoMail.created_at <= now)) or 0


def sent_by_mailbox(mailbox_id: int, now: datetime) -> int:
    """Automatic mails the mailbox sent in the hour before ``now``."""
    state = get_state()
    m = state.models
    return state.db.session.scalar(
        sa.select(sa.func.count()).select_from(m.AutoMail).where(
            m.AutoMail.mailbox_id == mailbox_id,
            m.AutoMail.created_at > now - WINDOW, m.AutoMail.created_at <= now)) or 0


def sender_limit_reason(address: str, now: datetime) -> str | None:
    limit = int(cv("AUTOREPLY_SENDER_LIMIT"))
    if sent_to(address, now) >= limit:
        return f"{address} already got {limit} automatic replies in the last hour"
    return None


def breaker_open(mailbox, now: datetime) -> bool:
    """True while the mailbox has sent its hourly maximum of automatic mail."""
    return sent_by_mailbox(mailbox.id, now) >= int(cv("AUTOREPLY_MAILBOX_LIMIT"))


def record_sent(mailbox, ticket, address: str, reason: str, now: datetime):
    state = get_state()
    row = state.models.AutoMail(
        mailbox_id=mailbox.id, ticket_id=ticket.id if ticket is not None else None,
        recipient=address.strip().lower()[:320], reason=reason[:40], created_at=now)
    state.db.session.add(row)
    return row
