"""Outgoing mail: building the MIME message of an outbox row, and talking SMTP.

Nothing here touches the database; :mod:`shared_inbox.services.outbox` decides *when* a
message is sent and records the outcome. Errors are worded for the agent who sees them on
the ticket:

- :class:`TransientSendError`: try again later (connection refused, timeouts, 4xx replies,
  login problems an admin can fix);
- :class:`PermanentSendError`: the server refused the message or every recipient with a
  5xx reply; retrying would give the same answer.
"""
from __future__ import annotations

import base64
import email.policy
import html
import os
import re
import smtplib
import socket
import ssl
import time
import uuid
from contextlib import contextmanager
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from datetime import datetime, timezone

from ..config import cv
from .net import is_loopback
from .threader import TICKET_TOKEN

__all__ = [
    "SendError", "TransientSendError", "PermanentSendError", "build_message",
    "build_notification", "send", "new_thread_index", "child_thread_index",
    "thread_topic", "reply_subject", "text_to_html", "as_bytes",
]

POLICY = email.policy.SMTP

#: "Re:", "RE:", "Fwd:", "FW:", "AW:", "SV:", "WG:", with optional "[n]" counts.
_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|sv|wg|antw)\s*(?:\[\d+\])?\s*:\s*)+", re.I)
_URL = re.compile(r"""\bhttps?://[^\s<>"']+[^\s<>"'.,;:!?)\]]""", re.I)


class SendError(Exception):
    """Sending failed; ``str(exc)`` is the reason shown to the agent."""


class TransientSendError(SendError):
    """Worth retrying later."""


class PermanentSendError(SendError):
    """Retrying would give the same answer (5xx refusal)."""


# -- subjects and Outlook threading headers ------------------------------------------------
def strip_prefixes(subject: str) -> str:
    return _PREFIX.sub("", subject or "").strip()


def thread_topic(subject: str) -> str:
    """The subject without Re:/Fwd: prefixes and without our ``[#n]`` token."""
    return " ".join(TICKET_TOKEN.sub("", strip_prefixes(subject)).split())


def subject_with_token(subject: str, number: int) -> str:
    base = strip_prefixes(subject) or "(no subject)"
    if f"[#{number}]" not in base:
        base = f"{base} [#{number}]"
    return base


def reply_subject(subject: str, number: int) -> str:
    """``Re: <subject> [#n]``: never ``Re: Re:``, the token added once."""
    return "Re: " + subject_with_token(subject, number)


# Thread-Index (MS-OXOMSG 2.2.1.3 PidTagConversationIndex): a 22-byte header block (one
# reserved byte 0x01, the 5 high bytes of the FILETIME after that, a 16-byte GUID), then
# a 5-byte child block per reply, all base64-encoded.
_FILETIME_EPOCH = 116444736000000000  # 1601-01-01 -> 1970-01-01 in 100 ns units


def _filetime(now: float | None = None) -> int:
    return int((time.time() if now is None else now) * 10_000_000) + _FILETIME_EPOCH


def new_thread_index(now: float | None = None) -> str:
    ft = _filetime(now).to_bytes(8, "big")
    return base64.b64encode(b"\x01" + ft[:5] + uuid.uuid4().bytes).decode("ascii")


def _decode_thread_index(value: str | None) -> bytes | None:
    if not value:
        return None
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (ValueError, TypeError):
        return None
    if len(data) < 22 or (len(data) - 22) % 5:
        return None
    return data


def child_thread_index(parent: str | None, now: float | None = None) -> str:
    """The parent's Thread-Index with one child block appended; a new one if it is not
    a valid Thread-Index."""
    data = _decode_thread_index(parent)
    if data is None:
        return new_thread_index(now)
    header_time = int.from_bytes(data[1:6] + b"\0\0\0", "big")
    delta = max(_filetime(now) - header_time, 0)
    if delta < (1 << 49):
        block = (delta >> 18) & 0x7FFFFFFF  # high bit 0
    else:
        block = 0x80000000 | ((delta >> 23) & 0x7FFFFFFF)
    child = block.to_bytes(4, "big") + os.urandom(1)
    return base64.b64encode(data + child).decode("ascii")


# -- bodies --------------------------------------------------------------------------------
def _linkify(text: str) -> str:
    out, pos = [], 0
    for match in _URL.finditer(text):
        out.append(html.escape(text[pos:match.start()]))
        url = html.escape(match.group(0))
        out.append(f'<a href="{url}">{url}</a>')
        pos = match.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def text_to_html(text: str) -> str:
    """Escaped HTML from plain text: blank lines make paragraphs, newlines ``<br>``,
    http(s) addresses become links."""
    paragraphs = [p for p in re.split(r"\n\s*\n", (text or "").replace("\r\n", "\n")) if p.strip()]
    body = "\n".join(
        "<p>" + "<br>\n".join(_linkify(line) for line in p.strip("\n").split("\n")) + "</p>"
        for p in paragraphs
    )
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>"
            f"<body style=\"font-family: sans-serif\">\n{body}\n</body></html>\n")


def _address(name: str, addr: str) -> str:
    return formataddr((name or "", addr))


def _addresses(pairs) -> list[str]:
    return [_address(name, addr) for name, addr in (pairs or []) if addr]


def _bracket(ids: str) -> str:
    return " ".join(f"<{i}>" for i in (ids or "").split())


def _attach(msg: EmailMessage, attachments, storage) -> None:
    for att in attachments:
        data = storage.get(att.storage_key)
        maintype, _, subtype = (att.content_type or "application/octet-stream").partition("/")
        if not subtype or maintype == "multipart":
            maintype, subtype = "application", "octet-stream"
        if maintype == "text":
            # the content manager takes text/* parts only as str
            try:
                msg.add_attachment(data.decode("utf-8"), subtype=subtype, filename=att.filename)
                continue
            except UnicodeDecodeError:
                maintype, subtype = "application", "octet-stream"
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=att.filename)


def build_message(message, mailbox, storage=None) -> EmailMessage:
    """The MIME message of an outbound outbox row (a reply or a forward).

    Only the row's own text and attachments go in: internal notes are never part of it.
    """
    if message.kind != "outbound":
        raise ValueError(f"only outbound messages are sent, not {message.kind!r}")
    if storage is None:
        from ..extension import get_state

        storage = get_state().storage
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address(message.from_name or mailbox.from_name or mailbox.name,
                           mailbox.email_address)
    msg["To"] = ", ".join(_addresses(message.to))
    if message.cc:
        msg["Cc"] = ", ".join(_addresses(message.cc))
    msg["Subject"] = message.subject
    date = message.date or message.created_at
    msg["Date"] = format_datetime(
        date.replace(tzinfo=timezone.utc) if date else datetime.now(timezone.utc))
    msg["Message-ID"] = f"<{message.message_id}>"
    if message.in_reply_to:
        msg["In-Reply-To"] = _bracket(message.in_reply_to)
    if message.references:
        msg["References"] = _bracket(message.references)
    headers = message.headers or {}
    msg["Thread-Topic"] = headers.get("thread-topic") or thread_topic(message.subject)
    msg["Thread-Index"] = headers.get("thread-index") or new_thread_index()
    if headers.get("auto-submitted"):
        # Our automatic mail (acknowledgements, out-of-hours replies, web form
        # confirmations) says so (RFC 3834), and asks Exchange not to auto-answer it.
        msg["Auto-Submitted"] = headers["auto-submitted"]
        msg["X-Auto-Response-Suppress"] = "All"
    msg["MIME-Version"] = "1.0"
    msg.set_content(message.body_text or "", subtype="plain", charset="utf-8")
    msg.add_alternative(text_to_html(message.body_text or ""), subtype="html", charset="utf-8")
    if message.attachments:
        _attach(msg, message.attachments, storage)
    return msg


def build_notification(note, mailbox, recipients) -> EmailMessage:
    """The mail telling agents they were @mentioned in an internal note.

    Separate from the customer thread on purpose: its own Message-ID (never stored, so a
    reply to it cannot thread into the ticket), no In-Reply-To/References, only agents'
    addresses as recipients, and ``Auto-Submitted: auto-generated``.
    """
    from email.utils import make_msgid

    headers = note.headers or {}
    ticket = note.ticket
    author = note.from_name or "An agent"
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address(f"{mailbox.name} inbox", mailbox.email_address)
    msg["To"] = ", ".join(_address(n, a) for n, a in recipients)
    msg["Subject"] = f"{author} mentioned you on #{ticket.number}: {thread_topic(ticket.subject)}"
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = make_msgid(domain=_domain(mailbox.email_address))
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    link = headers.get("_ticket_url") or ""
    text = (f"{author} mentioned you in an internal note on ticket #{ticket.number} "
            f"({ticket.subject}):\n\n{note.body_text}\n\n" + (f"Open the ticket: {link}\n" if link else ""))
    msg.set_content(text, charset="utf-8")
    return msg


def build_agent_notification(notification, mailbox) -> EmailMessage:
    """A mail to agents or admins (an ``InboxNotification`` row), outside any customer thread."""
    from email.utils import make_msgid

    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address(f"{mailbox.name} inbox", mailbox.email_address)
    msg["To"] = ", ".join(_address(n, a) for n, a in notification.to)
    msg["Subject"] = notification.subject
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = make_msgid(domain=_domain(mailbox.email_address))
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(notification.body_text or "", charset="utf-8")
    if notification.body_html:
        msg.add_alternative(notification.body_html, subtype="html", charset="utf-8")
    return msg


def _domain(address: str) -> str:
    return (address.rpartition("@")[2] or "localhost").strip().lower()


def as_bytes(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=POLICY)


# -- SMTP ------------------------------------------------------------------------------------


def _reply_text(code, text) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(str(text).split())}".strip()


def _classify(code: int, reason: str):
    return (PermanentSendError if 500 <= int(code) < 600 else TransientSendError)(reason)


def send(mailbox, email_message: EmailMessage | bytes, rcpts, *, mail_from: str | None = None,
         timeout: float | None = None) -> dict:
    """Deliver over the mailbox's SMTP server; returns the recipients refused while others
    were accepted (``{address: "550 ..."}``), raises :class:`SendError` otherwise."""
    rcpts = [r for r in dict.fromkeys(rcpts) if r]
    if not rcpts:
        raise PermanentSendError("no recipient")
    data = email_message if isinstance(email_message, bytes) else as_bytes(email_message)
    sender = mail_from or mailbox.email_address
    smtp, where = _connect(mailbox, timeout)
    try:
        with _as_send_errors(where):
            try:
                _start(smtp, mailbox, where)
                refused = smtp.sendmail(sender, rcpts, data)
            except smtplib.SMTPRecipientsRefused as exc:
                reasons = {r: _reply_text(c, t) for r, (c, t) in exc.recipients.items()}
                reason = "; ".join(f"{r}: {t}" for r, t in reasons.items())
                codes = [c for c, _ in exc.recipients.values()]
                if codes and all(500 <= c < 600 for c in codes):
                    raise PermanentSendError(reason) from exc
                raise TransientSendError(reason) from exc
    finally:
        _close(smtp)
    return {r: _reply_text(c, t) for r, (c, t) in (refused or {}).items()}


@contextmanager
def _as_send_errors(where: str):
    """smtplib, TLS and socket failures as :class:`SendError` with the server's reason
    (permanent for a 5xx reply), for sending and for the settings page's check alike."""
    try:
        yield
    except smtplib.SMTPResponseException as exc:
        raise _classify(exc.smtp_code, _reply_text(exc.smtp_code, exc.smtp_error)) from exc
    except ssl.SSLError as exc:
        raise TransientSendError(f"TLS with {where} failed: {exc}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientSendError(
            f"connection to smtp {where} failed ({exc.__class__.__name__}: {exc})") from exc


def _connect(mailbox, timeout: float | None):
    """An open ``smtplib`` connection to the mailbox's server and "host:port" for errors."""
    host, port, security = mailbox.smtp_host, mailbox.smtp_port, mailbox.smtp_security or "starttls"
    if not host:
        raise TransientSendError("no SMTP server is configured for this mailbox")
    if security not in ("ssl", "starttls", "plain"):
        raise PermanentSendError(f"unknown SMTP security {security!r}")
    if security == "plain" and not is_loopback(host):
        raise TransientSendError(
            "unencrypted SMTP is only allowed to this machine (127.0.0.1); choose SSL or STARTTLS")
    timeout = cv("IMAP_TIMEOUT") if timeout is None else timeout
    where = f"{host}:{port}"
    try:
        if security == "ssl":
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout,
                                    context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
    except ssl.SSLCertVerificationError as exc:
        raise TransientSendError(f"certificate of {host} not trusted: {exc.verify_message}") from exc
    except socket.gaierror as exc:
        raise TransientSendError(f"cannot find the SMTP server {host!r}: check the host name") from exc
    except smtplib.SMTPConnectError as exc:
        raise _classify(exc.smtp_code, f"SMTP server {where} refused the connection: "
                        + _reply_text(exc.smtp_code, exc.smtp_error)) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientSendError(
            f"cannot connect to smtp {where} ({exc.__class__.__name__}: {exc})") from exc
    return smtp, where


def _wants_login(smtp, mailbox) -> bool:
    """Log in with a user name or XOAUTH2, and also when the server offers AUTH and a
    password is known: a blank SMTP user name means "the IMAP user name" (as the mailbox
    form says), not "send without logging in"."""
    if mailbox.smtp_username or mailbox.auth_type == "xoauth2":
        return True
    if not smtp.has_extn("auth"):
        return False
    from ..crypto import SecretDecryptionError

    try:
        return bool(mailbox.smtp_password)
    except SecretDecryptionError:
        return False


def _start(smtp, mailbox, where: str) -> bool:
    """EHLO, STARTTLS when asked for, and the login; True when it logged in."""
    smtp.ehlo()
    if (mailbox.smtp_security or "starttls") == "starttls":
        smtp.starttls(context=ssl.create_default_context())
        smtp.ehlo()
    if not _wants_login(smtp, mailbox):
        return False
    from .oauth import OAuthError, smtp_login

    try:
        smtp_login(smtp, mailbox)
    except smtplib.SMTPAuthenticationError as exc:
        raise TransientSendError(
            "SMTP login failed, check the user name and password: "
            + _reply_text(exc.smtp_code, exc.smtp_error)) from exc
    except OAuthError as exc:
        raise TransientSendError(str(exc)) from exc
    return True


def _close(smtp) -> None:
    try:
        smtp.quit()
    except Exception:  # already closed
        try:
            smtp.close()
        except Exception:
            pass


def check_smtp(mailbox, timeout: float | None = None) -> str:
    """Connect, log in and ask whether the server takes mail from the mailbox's address
    (``MAIL FROM`` then ``RSET``: nothing is sent). Returns a one-line summary for the
    settings page; raises :class:`SendError` with the reason otherwise."""
    smtp, where = _connect(mailbox, timeout)
    try:
        with _as_send_errors(where):
            logged_in = _start(smtp, mailbox, where)
            code, text = smtp.mail(mailbox.email_address)
            if code != 250:
                raise _classify(code, f"the SMTP server {where} refuses mail from "
                                      f"{mailbox.email_address}: " + _reply_text(code, text))
            smtp.rset()
    finally:
        _close(smtp)
    how = "logged in" if logged_in else "no login asked for"
    return f"SMTP server {where} accepts mail from {mailbox.email_address} ({how})"


def parse_address(value: str) -> str | None:
    """A single plain address from user input, or None if it is not one."""
    if not value or any(c in value for c in "\r\n,;"):
        return None
    name, addr = parseaddr(value.strip())
    if not addr or "@" not in addr or " " in addr:
        return None
    try:
        Address(addr_spec=addr)
    except (ValueError, IndexError):
        return None
    local, _, domain = addr.rpartition("@")
    if not local or not domain or "." not in domain and domain != "localhost":
        return None
    return addr
