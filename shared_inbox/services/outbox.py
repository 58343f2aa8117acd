"""The outbox: every outgoing mail is a database row first, then delivered with retries.

A reply is committed as an ``InboxMessage`` (kind ``outbound``, ``send_status='queued'``)
before any SMTP traffic, so nothing the agent wrote is lost if the mail server is down.
:func:`deliver_due` sends what is due, oldest first:

- each row is *claimed* by one conditional UPDATE (``queued``/``retry`` and due →
  ``sending`` with a lease) that is committed before talking SMTP; only the worker whose
  UPDATE changed the row sends it, so two workers (scheduler + web request, two worker
  processes) never send one message twice;
- success → ``sent`` (+ ``sent_at``); a temporary failure → ``retry`` after 1, 2, 4...
  minutes (at most an hour) with the server's reason in ``send_error``; a permanent
  refusal (5xx for every recipient, or the message) or ``SHARED_INBOX_SEND_MAX_ATTEMPTS``
  attempts → ``failed``. The agent sees the status on the ticket.
- a row left in ``sending`` past its lease (the sender died) is claimed again. Delivery is
  therefore **at-least-once**: if a worker crashes after the SMTP server accepted the
  message but before ``sent`` was committed, the message is sent a second time when the
  lease expires. No other path sends a message twice. ``send_attempts`` counts attempts
  *started* (it is incremented by the claim), so a message that crashes its sender every
  time still ends as ``failed``.

Internal notes with @mentions use the same rows and the same claim: a note's ``to`` holds
only the mentioned agents' addresses (resolved when the note was written) and it is sent as
a separate notification mail (:func:`shared_inbox.mail.send.build_notification`), never
with the customer's thread headers and never to the customer.

Under ``app.testing`` or with ``SHARED_INBOX_SEND_MAIL = False`` nothing is sent unless the
caller passes ``force=True``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from .. import signals
from ..config import cv
from ..extension import get_state
from ..mail import send as mailsend
from ..models import utcnow

log = logging.getLogger("shared_inbox.outbox")

PENDING = ("queued", "retry")
SENDABLE_KINDS = ("outbound", "note")


@dataclass
class DeliveryStats:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    skipped: int = 0  # claimed by another worker meanwhile
    disabled: bool = False  # SEND_MAIL off (or testing) and not forced
    errors: dict[int, str] = field(default_factory=dict)


def backoff(attempts: int) -> timedelta:
    """1, 2, 4... minutes after the 1st, 2nd, 3rd... failed attempt; at most an hour."""
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 3600))


def sending_enabled() -> bool:
    return bool(cv("SEND_MAIL")) and not current_app.testing


def _due_clause(m, now: datetime, model=None):
    msg = model if model is not None else m.Message
    return sa.or_(
        sa.and_(msg.send_status.in_(PENDING),
                sa.or_(msg.next_attempt_at.is_(None), msg.next_attempt_at <= now)),
        # The sender crashed (or hung) mid-send: its lease ran out.
        sa.and_(msg.send_status == "sending", msg.next_attempt_at <= now),
    )


def due_ids(now: datetime | None = None, limit: int = 100, only_ids=None) -> list[int]:
    state = get_state()
    m = state.models
    now = now or utcnow()
    query = (sa.select(m.Message.id)
             .where(m.Message.kind.in_(SENDABLE_KINDS), _due_clause(m, now))
             .order_by(m.Message.created_at, m.Message.id).limit(limit))
    if only_ids is not None:
        query = query.where(m.Message.id.in_(list(only_ids)))
    return list(state.db.session.scalars(query))


def claim(message_id: int, now: datetime, model=None) -> bool:
    """Take one message (or notification) for sending; True only for the one worker that
    got it."""
    state = get_state()
    m = state.models
    model = model if model is not None else m.Message
    session = state.db.session
    lease = timedelta(seconds=cv("SEND_LEASE_SECONDS"))
    result = session.execute(
        sa.update(model)
        .where(model.id == message_id, _due_clause(m, now, model))
        .values(send_status="sending", next_attempt_at=now + lease,
                send_attempts=model.send_attempts + 1)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1


def deliver_due(now: datetime | None = None, *, force: bool = False, only_ids=None,
                limit: int = 100) -> DeliveryStats:
    """Send every due outbox message (oldest first); see the module docstring."""
    stats = DeliveryStats()
    if not force and not sending_enabled():
        stats.disabled = True
        return stats
    state = get_state()
    session = state.db.session
    ids = due_ids(now, limit, only_ids)
    session.commit()  # end the read transaction before claiming
    for message_id in ids:
        claim_time = now or utcnow()
        if not claim(message_id, claim_time):
            stats.skipped += 1
            continue
        outcome = _deliver_claimed(message_id, now)
        if outcome == "sent":
            stats.sent += 1
        else:  # "retry" or "failed"
            setattr(stats, outcome, getattr(stats, outcome) + 1)
            message = session.get(state.models.Message, message_id)
            stats.errors[message_id] = message.send_error or ""
    if only_ids is None:
        _deliver_notifications(now, limit, stats)
    return stats


def _deliver_notifications(now: datetime | None, limit: int, stats: DeliveryStats) -> None:
    """Mail to the team (services.notify): same claim, retries and back-off as replies."""
    state = get_state()
    m = state.models
    session = state.db.session
    ids = list(session.scalars(
        sa.select(m.Notification.id).where(_due_clause(m, now or utcnow(), m.Notification))
        .order_by(m.Notification.id).limit(limit)))
    session.commit()
    for notification_id in ids:
        if not claim(notification_id, now or utcnow(), m.Notification):
            stats.skipped += 1
            continue
        row = session.get(m.Notification, notification_id)
        try:
            mailbox = row.mailbox
            if mailbox is None:
                raise mailsend.PermanentSendError("no mailbox to send this notification from")
            data = mailsend.as_bytes(mailsend.build_agent_notification(row, mailbox))
            mailsend.send(mailbox, data, [a for _, a in row.to])
        except Exception as exc:
            if not isinstance(exc, mailsend.SendError):
                log.exception("could not send notification %s", notification_id)
                exc = mailsend.TransientSendError(f"{exc.__class__.__name__}: {exc}")
            outcome = _record_failure(row, exc, now)
            setattr(stats, outcome, getattr(stats, outcome) + 1)
            continue
        row.send_status = "sent"
        row.sent_at = utcnow()
        row.next_attempt_at = None
        row.send_error = None
        session.commit()
        stats.sent += 1


def _recipients(message) -> list[str]:
    return [addr for _, addr in list(message.to or []) + list(message.cc or []) if addr]


def _deliver_claimed(message_id: int, now: datetime | None) -> str:
    state = get_state()
    m = state.models
    session = state.db.session
    message = session.get(m.Message, message_id)
    mailbox = session.get(m.Mailbox, message.mailbox_id) if message.mailbox_id else None
    data = None
    try:
        if mailbox is None:
            raise mailsend.PermanentSendError("the mailbox of this message no longer exists")
        rcpts = _recipients(message)
        if message.kind == "note":
            email_message = mailsend.build_notification(message, mailbox, message.to or [])
        else:
            email_message = mailsend.build_message(message, mailbox, state.storage)
        data = mailsend.as_bytes(email_message)
        refused = mailsend.send(mailbox, data, rcpts)
    except mailsend.SendError as exc:
        return _record_failure(message, exc, now)
    except Exception as exc:  # a bug or a storage problem: keep the row, retry later
        log.exception("could not send message %s", message_id)
        return _record_failure(message, mailsend.TransientSendError(
            f"{exc.__class__.__name__}: {exc}"), now)
    message.send_status = "sent"
    message.sent_at = utcnow()
    message.next_attempt_at = None
    message.send_error = ("not accepted for " + "; ".join(f"{r}: {t}" for r, t in refused.items())
                          )[:2000] if refused else None
    if message.kind == "outbound":
        signals.send(signals.reply_sent, ticket=message.ticket, message=message)
    session.commit()
    log.info("sent message %s of ticket %s", message.id, message.ticket_id)
    if message.kind == "outbound" and (cv("APPEND_TO_SENT") or mailbox.append_to_sent):
        _append_to_sent(mailbox, data)
    return "sent"


def _record_failure(message, exc: Exception, now: datetime | None) -> str:
    session = get_state().db.session
    attempts = message.send_attempts or 1
    message.send_error = str(exc)[:2000] or exc.__class__.__name__
    if isinstance(exc, mailsend.PermanentSendError) or attempts >= cv("SEND_MAX_ATTEMPTS"):
        message.send_status = "failed"
        message.next_attempt_at = None
    else:
        message.send_status = "retry"
        message.next_attempt_at = (now or utcnow()) + backoff(attempts)
    session.commit()
    log.warning("message %s not sent (%s, attempt %s): %s", message.id, message.send_status,
                attempts, message.send_error)
    return message.send_status


def _append_to_sent(mailbox, data: bytes) -> None:
    """File a copy in the mailbox's Sent folder; a failure is logged, never fatal."""
    from ..mail.imap import _logout_quietly, connect

    try:
        client = connect(mailbox)
    except Exception:
        log.warning("could not connect to %s to file a sent copy", mailbox.email_address,
                    exc_info=True)
        return
    try:
        client.append(cv("SENT_FOLDER"), data, flags=[b"\\Seen"])
    except Exception:
        log.warning("could not file a sent copy in %s of %s", cv("SENT_FOLDER"),
                    mailbox.email_address, exc_info=True)
    finally:
        _logout_quietly(client)


def retry_now(message) -> bool:
    """Queue a failed/retrying message again at once (an agent's "retry" button)."""
    if message.send_status not in ("retry", "failed"):
        return False
    if message.send_status == "failed":
        message.send_attempts = 0
    message.send_status = "retry"
    message.next_attempt_at = None
    return True
