"""One raw email in, exactly one message in the right ticket out.

Each message is ingested in the same transaction as its ledger row (mailbox, folder,
UIDVALIDITY, UID) -- the poller's transaction holds one FETCH batch -- so a crash keeps
both or neither and a second poller fails on the unique key instead of duplicating. Parsing never raises; if anything else
goes wrong the raw bytes are still stored as a flagged, visible message.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..config import cv
from ..extension import get_state
from ..mail.classify import Classification, classify
from ..mail.large_parts import attachment_digest, parse_with_large_parts
from ..mail.parse import ParsedMessage
from ..mail.quotes import split_reply
from ..mail.threader import find_ticket
from ..models import utcnow
from .automation import pending_state
from .customers import get_or_create_customer
from .tickets import record_activity, snippet_of

log = logging.getLogger("shared_inbox.ingest")

def fingerprint(parsed: ParsedMessage) -> str:
    """Identifies the *content* of a message, independent of per-recipient headers.

    The same mail delivered to support@ and sales@ has different Received/Delivered-To
    headers but the same fingerprint; a sender that reuses a Message-ID for different
    mail gets different fingerprints.
    """
    h = hashlib.sha256()
    for part in (
        parsed.message_id or "",
        parsed.from_.email if parsed.from_ else "",
        parsed.subject,
        parsed.date.isoformat() if parsed.date else "",
        parsed.text,
        parsed.html or "",
    ):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    for att in parsed.attachments:
        h.update(attachment_digest(att))  # streamed large parts carry their hash
    return h.hexdigest()


def commit_with_files() -> None:
    """Commit the session after making the files it refers to durable (the poller defers
    storage fsyncs to one concurrent sync per transaction: ``storage.deferred_sync``)."""
    state = get_state()
    sync = getattr(state.storage, "sync", None)
    if sync is not None:
        sync()
    state.db.session.commit()


def rollback_with_files() -> None:
    """Roll the session back and drop the files written for it and not yet synced (the
    twin of :func:`commit_with_files`): no committed row can refer to them."""
    state = get_state()
    state.db.session.rollback()
    discard = getattr(state.storage, "discard", None)
    if discard is not None:
        discard()


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def ingest_date(parsed_date, received_at, now) -> datetime:
    """The message's date for the inbox: its Date header, else when the server got it,
    never in the future (a wrong sender clock must not pin a ticket to the top)."""
    date = _naive_utc(parsed_date) or _naive_utc(received_at) or now
    return now if date > now else date


def ledger_values(mailbox, folder, uidvalidity, uid, message_pk, now) -> dict:
    """The UID ledger row of a fetched message (``message_pk`` None for a skipped copy)."""
    return dict(mailbox_id=mailbox.id, folder=folder, uidvalidity=uidvalidity, uid=uid,
                message_pk=message_pk, fetched_at=now)


def _already_fetched(mailbox_id, folder, uidvalidity, uid) -> bool:
    state = get_state()
    m = state.models
    return state.db.session.scalar(
        sa.select(sa.func.count()).select_from(m.FetchedUid).where(
            m.FetchedUid.mailbox_id == mailbox_id, m.FetchedUid.folder == folder,
            m.FetchedUid.uidvalidity == uidvalidity, m.FetchedUid.uid == uid,
        )
    ) > 0


def ingest(mailbox, raw: bytes, *, folder: str = "INBOX", uidvalidity: int = 0,
           uid: int | None = None, received_at: datetime | None = None,
           imported: bool = False, check_ledger: bool = True, commit: bool = True):
    """Store ``raw`` as a message of ``mailbox``; returns the new message, or None when it
    was known already (same UID, or the same mail seen before).

    ``uid=None`` (mail not from IMAP, e.g. a test or a web form) skips the UID ledger.
    ``imported=True`` marks history fetched when a mailbox is added: it never triggers
    automation or notifications.

    ``commit=False`` (the poller's batches) adds the message and its ledger row to the
    current transaction and lets any error propagate: the caller commits the batch, or
    rolls it back and ingests it again one message per transaction (this function with
    ``commit=True``), where a failing message is stored raw and flagged.
    """
    if uid is not None and check_ledger and _already_fetched(mailbox.id, folder, uidvalidity, uid):
        return None
    if not commit:
        return _ingest_uncommitted(mailbox, raw, folder, uidvalidity, uid, received_at, imported)
    try:
        message = _ingest_uncommitted(mailbox, raw, folder, uidvalidity, uid, received_at,
                                      imported)
        commit_with_files()
        return message
    except IntegrityError:
        # Another poller committed this UID first.
        rollback_with_files()
        return None
    except Exception as exc:  # never lose the mail: keep it raw and flagged
        rollback_with_files()
        log.exception("could not ingest a message of %s; storing it raw", mailbox.email_address)
        message = _ingest_unreadable(mailbox, raw, f"{type(exc).__name__}: {exc}")
        message.is_imported = imported
        if uid is not None:
            _ledger(mailbox, folder, uidvalidity, uid, message.id)
        commit_with_files()
        return message


def _ingest_uncommitted(mailbox, raw: bytes, folder, uidvalidity, uid, received_at, imported):
    """The message and its ledger row, added to the session's transaction (not committed).

    The lookups below (duplicate, customer, thread) read only rows that are flushed
    explicitly when created (messages, tickets, customers); the previous message's
    attachments, activity and ledger rows ride along with this message's flush instead of
    an autoflush of their own before every lookup."""
    with get_state().db.session.no_autoflush:
        return _ingest_unflushed(mailbox, raw, folder, uidvalidity, uid, received_at, imported)


def _ingest_unflushed(mailbox, raw: bytes, folder, uidvalidity, uid, received_at, imported):
    # Large base64 attachments go straight to storage; ``parsed_raw`` is what the parser
    # read (``raw``, or a copy without those bodies). ``raw`` is still stored whole.
    parsed, parsed_raw = parse_with_large_parts(raw, get_state().storage,
                                                cv("LARGE_PART_SIZE"))
    content_hash = fingerprint(parsed)
    duplicate_id = _find_duplicate(parsed, content_hash)
    if duplicate_id is not None:
        if uid is not None:
            _ledger(mailbox, folder, uidvalidity, uid, duplicate_id)
        return None
    message = _ingest_parsed(mailbox, raw, parsed, content_hash, received_at,
                             classify(parsed_raw, parsed), imported)
    if uid is not None:
        _ledger(mailbox, folder, uidvalidity, uid, message.id)
    return message


def _ledger(mailbox, folder, uidvalidity, uid, message_pk: int | None) -> None:
    state = get_state()
    state.db.session.add(state.models.FetchedUid(
        **ledger_values(mailbox, folder, uidvalidity, uid, message_pk, utcnow())))


def _find_duplicate(parsed: ParsedMessage, content_hash: str) -> int | None:
    """The id of the same mail seen before (another of our mailboxes, or a UIDVALIDITY
    reset), or None.

    Identified by Message-ID and content together, or by content alone when the mail has
    no Message-ID. A candidate the poller accepted moments ago from its headers alone
    (``body_pending``, see services/accept.py) has no content hash yet: it is read from
    its raw copy here.
    """
    state = get_state()
    m = state.models
    same_id = (m.Message.message_id == parsed.message_id[:998]) if parsed.message_id \
        else m.Message.message_id.is_(None)
    found = state.db.session.scalar(
        sa.select(m.Message.id).where(
            m.Message.content_hash == content_hash, same_id, m.Message.kind == "inbound",
        ).limit(1)
    )
    if found is not None or not parsed.message_id:
        return found
    pending = sa.select(m.Message.id, m.Message.raw_key).where(
        same_id, m.Message.kind == "inbound", m.Message.body_pending.is_(True))
    for pk, raw_key in state.db.session.execute(pending):
        if _pending_fingerprint(pk, raw_key) == content_hash:
            return pk
    return None


def _pending_fingerprint(pk: int, raw_key: str) -> str | None:
    from ..mail.parse import parse_message

    try:
        return fingerprint(parse_message(get_state().storage.get(raw_key)))
    except Exception:  # an unreadable copy is no proof of a duplicate
        log.warning("could not read the raw copy of message %s", pk, exc_info=True)
        return None


def _bounced_ticket(kind: Classification):
    """The ticket of our message that bounced, and that message (or ``(None, None)``)."""
    if not kind.bounced_message_id:
        return None, None
    state = get_state()
    m = state.models
    original = state.db.session.scalar(
        sa.select(m.Message).where(m.Message.message_id == kind.bounced_message_id[:998])
        .order_by((m.Message.kind == "outbound").desc(), m.Message.id.desc()).limit(1))
    return (original.ticket, original) if original is not None else (None, None)


def _ingest_parsed(mailbox, raw: bytes, parsed: ParsedMessage, content_hash: str, received_at,
                   kind: Classification, imported: bool = False):
    state = get_state()
    m = state.models
    session = state.db.session
    raw_key = state.storage.put(raw, kind="raw", suffix=".eml")
    sender = parsed.from_
    customer = get_or_create_customer(sender.email if sender else "", sender.name if sender else "")
    ticket, bounced = _bounced_ticket(kind)
    if ticket is not None:
        reason = f"bounce of <{kind.bounced_message_id}>"
    else:
        ticket, reason = find_ticket(parsed, customer)
    now = utcnow()
    date = ingest_date(parsed.date, received_at, now)
    new_ticket = ticket is None
    split = split_reply(parsed.text or "")
    if new_ticket:
        # Complete before its INSERT (no UPDATE of the new row afterwards).
        ticket = m.Ticket(
            mailbox_id=mailbox.id, customer_id=customer.id,
            subject=(parsed.subject or "(no subject)")[:998], status="open",
            created_at=date, last_message_at=date, last_inbound_at=date, message_count=1,
            snippet=snippet_of(split.reply or parsed.text),
            is_flagged=bool(parsed.is_malformed or kind.is_bounce),
        )
        session.add(ticket)  # inserted by the message's flush below
        reason = "new conversation"

    message = m.Message(
        **envelope_columns(parsed, kind), mailbox_id=mailbox.id, kind="inbound",
        is_imported=imported, body_text=parsed.text or "", reply_text=split.reply,
        body_html=parsed.html, raw_key=raw_key, raw_size=len(raw), content_hash=content_hash,
        is_malformed=parsed.is_malformed, parse_error=parsed.error, thread_reason=reason,
        date=date, created_at=now,
        automation_state=pending_state(new_ticket=new_ticket, imported=imported),
    )
    if new_ticket:
        message.ticket = ticket  # one flush inserts both
    else:
        message.ticket_id = ticket.id  # (no load of the ticket's message list)
    session.add(message)
    session.flush()
    add_attachments(message, parsed)

    if (parsed.is_malformed or kind.is_bounce) and not ticket.is_flagged:
        ticket.is_flagged = True
    if kind.is_bounce and bounced is not None and bounced.kind == "outbound":
        bounced.send_status = "bounced"
        bounced.send_error = "; ".join(kind.reasons)[:2000] or "the message bounced"
    if new_ticket:  # counters, snippet and dates were set above
        record_activity(ticket, "created", mailbox=mailbox.email_address)
    elif kind.is_automated:
        # An out-of-office or a bounce joins the conversation but does not make the
        # customer "waiting" again, nor reopen what the team closed.
        ticket.message_count = (ticket.message_count or 0) + 1
        record_activity(ticket, "bounced" if kind.is_bounce else "automated_reply",
                        message=message.id, why=reason, recipients=kind.failed_recipients)
    else:
        _touch_ticket_inbound(ticket, message, split.reply or parsed.text, date)
        if ticket.status in ("closed", "pending") or ticket.snoozed_until is not None:
            old = ticket.status
            ticket.status = "open"
            ticket.snoozed_until = None
            ticket.closed_at = None
            record_activity(ticket, "reopened", old=old, reason="customer replied")
        record_activity(ticket, "customer_replied", message=message.id, why=reason)
    return message


def add_attachments(message, parsed: ParsedMessage) -> None:
    """The message's attachment rows; their bytes go to storage (large parts are there
    already: ``large_parts`` streamed them while parsing)."""
    state = get_state()
    m = state.models
    for att in parsed.attachments:
        state.db.session.add(m.Attachment(
            message_id=message.id, filename=att.filename[:255],
            content_type=att.content_type[:255],
            size=att.size if getattr(att, "storage_key", "") else len(att.payload),
            storage_key=getattr(att, "storage_key", "") or state.storage.put(att.payload,
                                                                             kind="att"),
            content_id=att.content_id[:255] if att.content_id else None,
            is_inline=att.is_inline,
        ))


def envelope_columns(parsed: ParsedMessage, kind: Classification) -> dict:
    """The message columns its header block gives (with their length limits) and its
    classification: the same for a mail stored whole and one the poller accepted from its
    headers (services/accept.py)."""
    sender = parsed.from_
    return dict(
        from_name=(sender.name if sender else "")[:255],
        from_email=(sender.email if sender else "")[:320],
        to=[[a.name, a.email] for a in parsed.to], cc=[[a.name, a.email] for a in parsed.cc],
        subject=(parsed.subject or "")[:998],
        message_id=parsed.message_id[:998] if parsed.message_id else None,
        in_reply_to=" ".join(parsed.in_reply_to), references=" ".join(parsed.references),
        headers={**parsed.headers, "_classification": {
            "reasons": kind.reasons, "failed_recipients": kind.failed_recipients,
            "bounced_message_id": kind.bounced_message_id,
            "suppress_autoreply": kind.suppress_autoreply}},
        is_automated=kind.is_automated, is_bounce=kind.is_bounce,
    )


def _touch_ticket_inbound(ticket, message, text: str, date) -> None:
    ticket.message_count = (ticket.message_count or 0) + 1
    ticket.snippet = snippet_of(text)
    if ticket.last_message_at is None or date >= ticket.last_message_at:
        ticket.last_message_at = date
    if ticket.last_inbound_at is None or date >= ticket.last_inbound_at:
        ticket.last_inbound_at = date


def _ingest_unreadable(mailbox, raw: bytes, error: str):
    """Last resort: a visible, flagged ticket holding the raw bytes."""
    state = get_state()
    m = state.models
    session = state.db.session
    now = utcnow()
    raw_key = state.storage.put(raw, kind="raw", suffix=".eml")
    ticket = m.Ticket(mailbox_id=mailbox.id, subject="(unreadable message)", status="open",
                      is_flagged=True, created_at=now, last_message_at=now, last_inbound_at=now,
                      message_count=1, snippet="This message could not be processed; "
                      "the original is kept.")
    session.add(ticket)
    session.flush()
    message = m.Message(
        ticket_id=ticket.id, mailbox_id=mailbox.id, kind="inbound", raw_key=raw_key,
        raw_size=len(raw), is_malformed=True, parse_error=error[:2000],
        body_text=raw[:20000].decode("utf-8", "replace"), thread_reason="could not be parsed",
        automation_state="skipped", date=now, created_at=now,
    )
    session.add(message)
    session.flush()
    record_activity(ticket, "created", unreadable=True)
    return message
