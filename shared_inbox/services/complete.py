"""The second half of ingestion: the body of mail the poller accepted from its headers.

:mod:`.accept` commits a fetched mail threaded into its ticket with ``body_pending`` set;
here its raw copy is parsed whole -- text and sanitized HTML, attachments and inline
images, the quoted history split from the new text, MIME defects -- and the flag is
cleared. Each message is claimed (``UPDATE ... WHERE body_pending``) in the transaction
that stores its body, so two workers never both complete it, and a crash leaves it pending
for the next run. A message that cannot be parsed keeps its raw bytes as text, flagged.

Runs right after a poll (:func:`shared_inbox.mail.imap.poll_mailbox`) and before any
automation (:func:`.automation.process_pending` only takes completed mail).
"""
from __future__ import annotations

import contextlib
import logging

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from ..config import cv
from ..extension import get_state
from ..mail.large_parts import parse_with_large_parts
from ..mail.quotes import split_reply
from .ingest import add_attachments, commit_with_files, fingerprint, rollback_with_files
from .tickets import snippet_of

log = logging.getLogger("shared_inbox.complete")

CHUNK = 50


def pending_message_ids(mailbox_id: int | None = None, limit: int = CHUNK) -> list[int]:
    state = get_state()
    m = state.models
    query = (sa.select(m.Message.id).where(m.Message.body_pending.is_(True))
             .order_by(m.Message.id).limit(limit))
    if mailbox_id is not None:
        query = query.where(m.Message.mailbox_id == mailbox_id)
    return list(state.db.session.scalars(query))


def complete_pending(mailbox_id: int | None = None) -> int:
    """Complete every pending message (of one mailbox, or all); returns how many."""
    done = 0
    while True:
        ids = pending_message_ids(mailbox_id)
        if not ids:
            return done
        done += complete_messages(ids)


def complete_messages(ids: list[int]) -> int:
    """Complete these messages (those still pending) and commit; returns how many.

    One transaction for all of them; if any fails, each again in its own transaction,
    where one that cannot be parsed keeps its raw text, flagged. Used after a poll and by
    the ticket page, which completes a message before showing it."""
    state = get_state()
    deferred = getattr(state.storage, "deferred_sync", None)
    with deferred() if deferred is not None else contextlib.nullcontext():
        try:
            done = _complete(ids)
            commit_with_files()
            return done
        except Exception:
            rollback_with_files()
            log.info("completing a chunk of messages failed; one at a time", exc_info=True)
            return sum(_complete_alone(pk) for pk in ids)


def _complete_alone(pk: int) -> int:
    """One message in its own transaction; if parsing fails, keep the raw text, flagged."""
    try:
        count = _complete([pk])
        commit_with_files()
        return count
    except Exception as exc:  # never lose the mail: it stays readable as raw text
        rollback_with_files()
        log.exception("could not parse the body of message %s; keeping it raw", pk)
        count = _keep_raw(pk, f"{type(exc).__name__}: {exc}")
        commit_with_files()
        return count


def _claim(ids: list[int]) -> list[int]:
    """Those of ``ids`` still pending, now ours: a second worker claims none of them."""
    state = get_state()
    M = state.models.Message.__table__
    return list(state.db.session.execute(
        sa.update(M).where(M.c.id.in_(ids), M.c.body_pending.is_(True))
        .values(body_pending=False).returning(M.c.id)).scalars())


def _complete(ids: list[int]) -> int:
    state = get_state()
    m = state.models
    session = state.db.session
    claimed = _claim(ids)
    if not claimed:
        return 0  # another worker completed them
    messages = session.scalars(
        sa.select(m.Message).where(m.Message.id.in_(claimed)).order_by(m.Message.id)
        .options(selectinload(m.Message.ticket)).execution_options(populate_existing=True)
    ).all()
    latest = _latest_per_ticket({msg.ticket_id for msg in messages})
    for message in messages:
        raw = state.storage.get(message.raw_key)
        parsed, _parsed_raw = parse_with_large_parts(raw, state.storage,
                                                     cv("LARGE_PART_SIZE"))
        del raw
        split = split_reply(parsed.text or "")
        message.body_text = parsed.text or ""
        message.reply_text = split.reply
        message.body_html = parsed.html
        message.content_hash = fingerprint(parsed)
        if parsed.is_malformed:
            message.is_malformed = True
            message.parse_error = parsed.error
        add_attachments(message, parsed)
        ticket = message.ticket
        if parsed.is_malformed and not ticket.is_flagged:
            ticket.is_flagged = True
        newest = latest.get(message.ticket_id)
        if newest == message.id or (newest is None and message.thread_reason
                                    == "new conversation"):
            # (an out-of-office that opened the ticket is its snippet until someone writes)
            ticket.snippet = snippet_of(split.reply or parsed.text)
    session.flush()
    return len(messages)


def _latest_per_ticket(ticket_ids: set[int]) -> dict[int, int]:
    """Per ticket, the newest message that sets its snippet (a reply, or customer mail
    that is not automated): an older one completed later must not replace it."""
    state = get_state()
    M = state.models.Message.__table__.c
    rows = state.db.session.execute(
        sa.select(M.ticket_id, sa.func.max(M.id)).where(
            M.ticket_id.in_(ticket_ids),
            sa.or_(M.kind == "outbound",
                   sa.and_(M.kind == "inbound", M.is_automated.is_(False))),
        ).group_by(M.ticket_id))
    return dict(rows.all())


def _keep_raw(pk: int, error: str) -> int:
    state = get_state()
    m = state.models
    session = state.db.session
    if not _claim([pk]):
        return 0
    message = session.get(m.Message, pk, populate_existing=True)
    try:
        text = state.storage.get(message.raw_key)[:20000].decode("utf-8", "replace")
    except Exception:  # noqa: BLE001
        text = "The original of this message could not be read."
    message.body_text = text
    message.is_malformed = True
    message.parse_error = error[:2000]
    message.ticket.is_flagged = True
    session.flush()
    return 1
