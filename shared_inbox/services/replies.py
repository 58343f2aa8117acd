"""What an agent writes on a ticket: replies, reply-and-close, internal notes, forwards.

One place per business rule. Every function adds rows to the session and leaves the commit
to the caller (the view); outgoing mail is only *queued* here (see
:mod:`shared_inbox.services.outbox`).

- A reply goes to the customer (the Reply-To of their latest mail when it had one), answers
  their latest non-automatic message (In-Reply-To / References), carries the ``[#n]``
  token, the mailbox signature and the agent's files. It never contains internal notes: the
  body is only what the agent typed plus the signature.
- An internal note is never sent to the customer. ``@name`` mentions (first name or email of
  an agent who may see the mailbox) queue a notification mail to those agents only.
- A forward sends the customer's latest message (quoted, with its files) to one address.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from email.utils import make_msgid

import sqlalchemy as sa

from .. import signals
from ..config import cv
from ..extension import get_state
from ..mail import send as mailsend
from ..models import utcnow
from .tickets import change_status, record_activity, refresh_summary, snippet_of

log = logging.getLogger("shared_inbox.replies")

MAX_REFERENCES = 20
MAX_TEXT = 200_000
MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9._%+-]+(?:@[A-Za-z0-9.-]+\.[A-Za-z]{2,})?)")


class ReplyError(ValueError):
    """The operation cannot be done as asked (shown to the agent)."""


@dataclass
class Upload:
    """A file an agent attached to a reply."""

    filename: str
    content_type: str
    data: bytes


# -- helpers -------------------------------------------------------------------------------
def _domain(address: str) -> str:
    return (address.rpartition("@")[2] or "localhost").strip().lower()


def new_message_id(mailbox) -> str:
    return make_msgid(domain=_domain(mailbox.email_address)).strip("<>")


def trim_references(ids: list[str], limit: int = MAX_REFERENCES) -> list[str]:
    """At most ``limit`` ids: the first (the thread's root) and the newest."""
    ids = list(dict.fromkeys(i for i in ids if i))
    if len(ids) <= limit:
        return ids
    return [ids[0]] + ids[-(limit - 1):]


def last_customer_message(ticket):
    """The newest inbound, non-automatic message of the ticket (or the newest inbound)."""
    state = get_state()
    m = state.models
    base = sa.select(m.Message).where(m.Message.ticket_id == ticket.id,
                                      m.Message.kind == "inbound")
    order = (m.Message.date.desc(), m.Message.id.desc())
    return state.db.session.scalars(
        base.where(m.Message.is_automated.is_(False)).order_by(*order).limit(1)).first() \
        or state.db.session.scalars(base.order_by(*order).limit(1)).first()


def _own_addresses() -> set[str]:
    state = get_state()
    return {a.lower() for a in state.db.session.scalars(sa.select(state.models.Mailbox.email_address))}


def _reply_to_of(message) -> list[tuple[str, str]]:
    """The Reply-To addresses of a stored inbound message (read from its original bytes)."""
    if message is None or not message.raw_key:
        return []
    try:
        from ..mail.parse import parse_message

        parsed = parse_message(get_state().storage.get(message.raw_key))
    except Exception:  # a missing file must not prevent replying
        log.warning("could not read the original of message %s", message.id, exc_info=True)
        return []
    return [(a.name, a.email) for a in parsed.reply_to if a.email]


def reply_recipients(ticket, customer_message) -> list[list[str]]:
    own = _own_addresses()
    candidates = _reply_to_of(customer_message)
    if not candidates and ticket.customer is not None and ticket.customer.email:
        candidates = [(ticket.customer.name, ticket.customer.email)]
    if not candidates and customer_message is not None and customer_message.from_email:
        candidates = [(customer_message.from_name, customer_message.from_email)]
    result, seen = [], set()
    for name, addr in candidates:
        if addr and addr.lower() not in own and addr.lower() not in seen:
            seen.add(addr.lower())
            result.append([name or "", addr])
    return result


def agent_name(user) -> str:
    if user is None:
        return ""
    return get_state().extension.display_user(user).get("name") or ""


def _from_name(mailbox, author) -> str:
    """The mailbox's From name, ``{agent}`` replaced by the author's name ("{agent} at Acme
    Support" -> "Ada at Acme Support"); blank: "<agent> at <mailbox name>"."""
    name = agent_name(author)
    if mailbox.from_name:
        return " ".join(mailbox.from_name.replace("{agent}", name).split()) or mailbox.name
    return f"{name} at {mailbox.name}" if name else mailbox.name


def _with_signature(text: str, mailbox) -> str:
    text = text.rstrip()
    signature = (mailbox.signature or "").strip("\n")
    return f"{text}\n\n-- \n{signature}\n" if signature.strip() else text + "\n"


def _clean_filename(name: str) -> str:
    name = os.path.basename((name or "").replace("\\", "/"))
    name = "".join(c for c in name if c.isprintable() and c not in '"<>|:*?').strip(" .")
    return name[:200] or "attachment"


def check_uploads(uploads) -> list[Upload]:
    uploads = [u for u in uploads if u is not None and (u.filename or u.data)]
    total = sum(len(u.data) for u in uploads)
    limit = cv("MAX_ATTACHMENT_SIZE")
    if total > limit:
        raise ReplyError(f"The attached files are {total / 1048576:.1f} MB together; "
                         f"the limit is {limit / 1048576:.0f} MB. Send fewer or smaller files.")
    return uploads


def _store_attachments(message, uploads) -> None:
    state = get_state()
    for up in uploads:
        content_type = (up.content_type or "application/octet-stream").split(";")[0].strip().lower()
        if "/" not in content_type:
            content_type = "application/octet-stream"
        message.attachments.append(state.models.Attachment(
            filename=_clean_filename(up.filename), content_type=content_type[:255],
            size=len(up.data), storage_key=state.storage.put(up.data, kind="att"),
        ))


def _text(text: str | None, what: str) -> str:
    text = (text or "").replace("\r\n", "\n")
    if not text.strip():
        raise ReplyError(f"Write a {what} first: it is empty.")
    if len(text) > MAX_TEXT:
        raise ReplyError(f"The {what} is too long ({len(text)} characters, at most {MAX_TEXT}).")
    return text


# -- replies ---------------------------------------------------------------------------------
def queue_reply(ticket, author, text: str, *, attachments=(), close: bool = False, cc=()):
    """Queue a reply to the customer; returns the outbound message (not yet sent)."""
    state = get_state()
    m = state.models
    session = state.db.session
    text = _text(text, "reply")
    uploads = check_uploads(attachments)
    mailbox = ticket.mailbox
    customer_message = last_customer_message(ticket)
    to = reply_recipients(ticket, customer_message)
    if not to:
        raise ReplyError("This ticket has no customer address to reply to.")
    own = _own_addresses()
    cc_list = []
    for addr in cc:
        clean = mailsend.parse_address(addr)
        if clean is None:
            raise ReplyError(f"{addr!r} is not an email address.")
        if clean.lower() not in own:
            cc_list.append(["", clean])
    in_reply_to, references, thread_index = "", [], None
    if customer_message is not None and customer_message.message_id:
        in_reply_to = customer_message.message_id
        references = trim_references(customer_message.reference_ids + [in_reply_to])
        thread_index = (customer_message.headers or {}).get("thread-index")
    subject = mailsend.reply_subject(ticket.subject, ticket.number)
    now = utcnow()
    message = m.Message(
        ticket_id=ticket.id, mailbox_id=mailbox.id, kind="outbound", author=author,
        from_name=_from_name(mailbox, author)[:255], from_email=mailbox.email_address,
        to=to, cc=cc_list, subject=subject[:998], message_id=new_message_id(mailbox),
        in_reply_to=in_reply_to, references=" ".join(references),
        headers={
            "thread-topic": mailsend.thread_topic(ticket.subject),
            "thread-index": mailsend.child_thread_index(thread_index) if thread_index
            else mailsend.new_thread_index(),
        },
        body_text=_with_signature(text, mailbox), reply_text=text.strip(),
        send_status="queued", send_attempts=0, thread_reason="reply by an agent",
        date=now, created_at=now,
    )
    _store_attachments(message, uploads)
    session.add(message)
    session.flush()
    if close:  # satisfaction rating links (issue 6): only in the closing reply, when enabled
        from .satisfaction import rating_request_text

        rating_request = rating_request_text(ticket, message)
        if rating_request:
            message.body_text = _with_signature(text.rstrip() + "\n\n" + rating_request, mailbox)
            message.headers = dict(message.headers, _rating_request=True)
    refresh_summary(ticket)
    ticket.last_outbound_at = now
    ticket.last_message_at = now
    ticket.snippet = snippet_of(text)
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    record_activity(ticket, "replied", author, message=message.id,
                    to=[a for _, a in to + cc_list], attachments=len(uploads), close=close)
    change_status(ticket, "closed" if close else "pending", author)
    return message


# -- notes -----------------------------------------------------------------------------------
def mention_candidates(ticket) -> list:
    """Agents who may see the ticket's mailbox: its members, and admins by email."""
    state = get_state()
    m = state.models
    users = list(state.db.session.scalars(
        sa.select(state.user_model).join(m.MailboxMember, m.MailboxMember.user_id ==
                                         getattr(state.user_model, _pk_name()))
        .where(m.MailboxMember.mailbox_id == ticket.mailbox_id)))
    return [u for u in users if state.extension.is_agent(u)]


def _pk_name() -> str:
    from ..models import user_primary_key

    return user_primary_key(get_state().user_model).key


def _admin_by_email(email: str):
    state = get_state()
    column = getattr(state.user_model, "email", None)
    if column is None:
        return None
    user = state.db.session.scalars(
        sa.select(state.user_model).where(sa.func.lower(column) == email.lower()).limit(2)).all()
    if len(user) == 1 and state.extension.is_admin(user[0]):
        return user[0]
    return None


def find_mentions(ticket, text: str) -> list:
    """Agents named by ``@firstname`` or ``@email`` in ``text`` who may see the ticket."""
    tokens = {t.lower().rstrip(".") for t in MENTION.findall(text or "")}
    if not tokens:
        return []
    display = get_state().extension.display_user
    found, seen = [], set()
    candidates = mention_candidates(ticket)
    for user in candidates:
        info = display(user)
        email = (info.get("email") or "").lower()
        first = (info.get("name") or "").split()[0].lower() if (info.get("name") or "").split() else ""
        if (first and first in tokens) or (email and email in tokens):
            if email and email not in seen:
                seen.add(email)
                found.append(user)
    for token in tokens - seen:
        if "@" in token:
            admin = _admin_by_email(token)
            if admin is not None:
                email = (display(admin).get("email") or "").lower()
                if email and email not in seen:
                    seen.add(email)
                    found.append(admin)
    return found


def queue_note(ticket, author, text: str, *, ticket_url: str = ""):
    """Add an internal note; @mentioned agents get a notification mail (queued)."""
    state = get_state()
    m = state.models
    text = _text(text, "note")
    display = state.extension.display_user
    own = _own_addresses()
    author_email = (display(author).get("email") or "").lower() if author is not None else ""
    mentioned = [u for u in find_mentions(ticket, text)
                 if (display(u).get("email") or "").lower() not in own | {author_email}]
    to = [[display(u).get("name") or "", display(u)["email"]] for u in mentioned]
    now = utcnow()
    note = m.Message(
        ticket_id=ticket.id, mailbox_id=ticket.mailbox_id, kind="note", author=author,
        from_name=agent_name(author)[:255], body_text=text.strip(), reply_text=text.strip(),
        to=to, headers={"_ticket_url": ticket_url} if to else {},
        # Only a note that mentions someone enters the outbox (as a notification to them).
        send_status="queued" if to else None, send_attempts=0, date=now, created_at=now,
    )
    state.db.session.add(note)
    state.db.session.flush()
    record_activity(ticket, "note", author, message=note.id, mentions=[a for _, a in to])
    signals.send(signals.note_added, ticket=ticket, message=note, actor=author)
    return note


# -- forward ---------------------------------------------------------------------------------
def _quote_header(message) -> str:
    sender = f"{message.from_name} <{message.from_email}>" if message.from_name \
        else message.from_email
    date = (message.date or message.created_at).strftime("%Y-%m-%d %H:%M UTC")
    to = ", ".join(a for _, a in (message.to or []))
    return ("---------- Forwarded message ----------\n"
            f"From: {sender}\nDate: {date}\nSubject: {message.subject}\nTo: {to}\n")


def forward(ticket, author, to_address: str, text: str = ""):
    """Send the customer's latest message (quoted, with its files) to ``to_address``."""
    state = get_state()
    m = state.models
    address = mailsend.parse_address(to_address or "")
    if address is None:
        raise ReplyError(f"{(to_address or '').strip() or 'The address'!r} is not an email address."
                         if (to_address or "").strip() else "Enter the address to forward to.")
    if address.lower() in _own_addresses():
        raise ReplyError("Forwarding to one of the inbox's own mailboxes would loop back.")
    original = last_customer_message(ticket)
    if original is None:
        raise ReplyError("This ticket has no customer message to forward.")
    text = (text or "").replace("\r\n", "\n").strip()
    if len(text) > MAX_TEXT:
        raise ReplyError("The text is too long.")
    mailbox = ticket.mailbox
    body = (text + "\n\n" if text else "") + _quote_header(original) + "\n" + \
        (original.body_text or "")
    now = utcnow()
    message = m.Message(
        ticket_id=ticket.id, mailbox_id=mailbox.id, kind="outbound", author=author,
        from_name=_from_name(mailbox, author)[:255], from_email=mailbox.email_address,
        to=[["", address]], cc=[],
        subject=("Fwd: " + mailsend.subject_with_token(original.subject or ticket.subject,
                                                        ticket.number))[:998],
        message_id=new_message_id(mailbox),
        headers={"thread-topic": mailsend.thread_topic(original.subject or ticket.subject),
                 "thread-index": mailsend.new_thread_index(), "_forward_of": original.id},
        body_text=_with_signature(body, mailbox), reply_text=text or None,
        send_status="queued", send_attempts=0, thread_reason=f"forwarded to {address}",
        date=now, created_at=now,
    )
    for att in original.attachments:
        if att.is_inline:
            continue
        message.attachments.append(m.Attachment(
            filename=att.filename, content_type=att.content_type, size=att.size,
            storage_key=att.storage_key))
    state.db.session.add(message)
    state.db.session.flush()
    # A forward is not an answer to the customer: only the count changes.
    ticket.message_count = (ticket.message_count or 0) + 1
    record_activity(ticket, "forwarded", author, message=message.id, to=address,
                    original=original.id)
    return message
