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

from ..config import cv
from ..extension import get_state
from ..mail.large_parts import parse_with_large_parts
from ..mail.quotes import split_reply
from .ingest import add_attachments, commit_with_files, fingerprint
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
    state = get_state()
    deferred = getattr(state.storage, "deferred_sync", None)
    done = 0
    with deferred() if deferred is not None else contextlib.nullcontext():
        while True:
            ids = pending_message_ids(mailbox_id)
            if not ids:
                return done
            try:
                done += sum(_complete(pk) for pk in ids)
                commit_with_files()
            except Exception:
                state.db.session.rollback()
                log.info("completing a chunk of messages failed; one at a time",
                         exc_info=True)
                for pk in ids:
                    done += _complete_alone(pk)


def _complete_alone(pk: int) -> int:
    """One message in its own transaction; if parsing fails, keep the raw text, flagged."""
    session = get_state().db.session
    try:
        count = _complete(pk)
        commit_with_files()
        return count
    except Exception as exc:  # never lose the mail: it stays readable as raw text
        session.rollback()
        log.exception("could not parse the body of message %s; keeping it raw", pk)
        count = _keep_raw(pk, f"{type(exc).__name__}: {exc}")
        commit_with_files()
        return count


def _claim(pk: int) -> bool:
    state = get_state()
    m = state.models
    claimed = state.db.session.execute(
        sa.update(m.Message).where(m.Message.id == pk, m.Message.body_pending.is_(True))
        .values(body_pending=False).execution_options(synchronize_session=False))
    return claimed.rowcount == 1


def _complete(pk: int) -> int:
    state = get_state()
    m = state.models
    session = state.db.session
    if not _claim(pk):
        return 0  # another worker completed it
    message = session.get(m.Message, pk, populate_existing=True)
    raw = state.storage.get(message.raw_key)
    parsed, _parsed_raw = parse_with_large_parts(raw, state.storage, cv("LARGE_PART_SIZE"))
    del raw
    split = split_reply(parsed.text or "")
    message.body_text = parsed.text or ""
    message.reply_text = split.reply
    message.body_html = parsed.html
    message.content_hash = fingerprint(parsed)
    if parsed.is_malformed:
        message.is_malformed = True
        message.parse_error = parsed.error
    session.flush()
    add_attachments(message, parsed)
    ticket = message.ticket
    if parsed.is_malformed and not ticket.is_flagged:
        ticket.is_flagged = True
    if not message.is_automated and _is_latest(message):
        ticket.snippet = snippet_of(split.reply or parsed.text)
    session.flush()
    return 1


def _is_latest(message) -> bool:
    """No later message that sets the ticket's snippet (a reply, or customer mail)."""
    state = get_state()
    m = state.models
    later = state.db.session.execute(
        sa.select(m.Message.id).where(
            m.Message.ticket_id == message.ticket_id, m.Message.id > message.id,
            sa.or_(m.Message.kind == "outbound",
                   sa.and_(m.Message.kind == "inbound", m.Message.is_automated.is_(False))),
        ).limit(1)).first()
    return later is None


def _keep_raw(pk: int, error: str) -> int:
    state = get_state()
    m = state.models
    session = state.db.session
    if not _claim(pk):
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
