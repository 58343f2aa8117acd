"""Mail that must not start a conversation or be answered automatically.

:func:`classify` looks at one incoming message and says whether it is

* a **bounce** -- a delivery failure report: an RFC 3464 DSN (``multipart/report;
  report-type=delivery-status`` with a ``message/delivery-status`` part whose recipients
  have ``Action: failed`` / ``Status: 5.x.x``), or a classic non-DSN bounce (a notice from
  MAILER-DAEMON / postmaster / a null Return-Path that names failed recipients).  The
  Message-ID of *our* message that bounced is taken from the returned ``message/rfc822`` or
  ``text/rfc822-headers`` part (or from the copy quoted in a classic bounce's text), else
  from the bounce's In-Reply-To / References;
* **auto-submitted** -- RFC 3834 ``Auto-Submitted`` other than ``no``, ``X-Autoreply``,
  ``X-Autorespond``, ``Precedence: auto_reply`` and similar vendor headers, out-of-office
  subjects ("Automatic reply:", "Abwesenheitsnotiz:" ...; a looser subject match only
  together with a header hint such as ``X-Auto-Response-Suppress`` or a null Return-Path),
  and machine-made reports that are not failures: delay warnings and success DSNs, read
  receipts (MDN), abuse feedback reports, anything from MAILER-DAEMON;
* **list / bulk mail** -- ``List-Id``, ``List-Unsubscribe``, ``Precedence: bulk|list|junk``.

``suppress_autoreply`` is set when the sender asked for no automatic answer
(``X-Auto-Response-Suppress: All / OOF / AutoReply``) or when any of the above holds.

Only the top-level headers count: a returned or forwarded message inside the mail (its own
``List-Unsubscribe``, ``Auto-Submitted``...) never classifies the mail that carries it.

``classify`` never raises; on an internal error it logs and returns a neutral result.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from email import policy as _policy
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser

from .parse import ParsedMessage, decode_header_value, extract_message_ids

__all__ = ["Classification", "classify", "classify_headers"]

log = logging.getLogger("shared_inbox.classify")

MAX_PARTS = 200  # MIME parts looked at when searching for the report parts
MAX_BODY_SCAN = 64 * 1024  # characters of a classic bounce's text searched
MAX_RECIPIENTS = 100
MAX_HEADER_BLOCK = 1024 * 1024


@dataclass
class Classification:
    #: A delivery failure report (DSN with a failed recipient, or a classic bounce).
    is_bounce: bool = False
    #: Message-ID (without <>) of the message that was returned -- ours, normally.  Also set
    #: for delay warnings (``is_bounce`` False, ``delayed_recipients`` non-empty).
    bounced_message_id: str | None = None
    #: Lower-cased addresses whose delivery failed permanently.
    failed_recipients: list[str] = field(default_factory=list)
    #: Made by a machine on its own: auto-replies, out-of-office, non-failure DSNs, read
    #: receipts, feedback reports, MAILER-DAEMON mail.
    is_auto_submitted: bool = False
    #: Mailing list or bulk mail.
    is_list: bool = False
    #: Never send an automatic answer to this mail.
    suppress_autoreply: bool = False
    #: Short human-readable explanations, e.g. "Auto-Submitted: auto-replied".
    reasons: list[str] = field(default_factory=list)
    #: Addresses a delay warning (DSN ``Action: delayed`` / 4.x.x) is about (not failures).
    delayed_recipients: list[str] = field(default_factory=list)

    @property
    def is_automated(self) -> bool:
        """True when the mail must not start a conversation nor get an automatic answer."""
        return self.is_bounce or self.is_auto_submitted or self.is_list


# ----------------------------------------------------------------------------- patterns

_NULL_PATH = re.compile(r"^\s*<\s*>\s*$")
_ADDR = re.compile(r"[^\s<>()\[\],;:\"'`]+@[^\s<>()\[\],;:\"'`]+")
_DAEMON_LOCAL = re.compile(
    r"^(?:mailer-daemon|mailer_daemon|mailerdaemon|mail-daemon|maildaemon|mail\.daemon"
    r"|postmaster|microsoftexchange[0-9a-f]{32})$"
)
_MAILER_DAEMON_LOCAL = re.compile(r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon)$")
_REPORT_TYPE = re.compile(r"""report-type\s*=\s*"?\s*([\w.-]+)""", re.IGNORECASE)
_MEDIA_TYPE = re.compile(r"^\s*([\w!#$&^.+-]+/[\w!#$&^.+-]+)")

# Subject of a classic bounce (only looked at for mail from a mailer daemon / null path).
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|returned mail|return(?:ed)? to sender|failure notice"
    r"|delivery (?:status notification \(failure\)|failure|failed|has failed|problem)"
    r"|mail delivery (?:failed|failure|system)|could not be delivered|not delivered"
    r"|non[- ]?deliver|delivery report|mail system error|unzustellbar|nicht zustellbar"
    r"|non remis|non recapitabile|no se puede entregar|onbestelbaar|olevererbart"
    r"|unbestellbar|fehlgeschlagen|échec de la remise|erro na entrega",
    re.IGNORECASE,
)
_DELAY_TEXT = re.compile(
    r"\bwarning message only\b|\bdelivery (?:status notification \(delay\)|delayed)"
    r"|\bdelayed mail\b|\bstill (?:undelivered|not been delivered)\b"
    r"|\bwill (?:keep|continue) trying\b|\bcould not send message for past\b"
    r"|\bnot yet been delivered\b|\bdelivery has been delayed\b",
    re.IGNORECASE,
)
_FAILURE_TEXT = re.compile(
    r"could not be delivered|couldn't be delivered|wasn't able to deliver"
    r"|was not delivered|delivery (?:to the following recipients? )?(?:has )?failed"
    r"|permanent (?:fatal )?error|following address(?:es|\(es\))? failed"
    r"|undeliverable|user unknown|no such user|mailbox unavailable|does not exist"
    r"|unknown (?:user|recipient|e-?mail address)|recipient address rejected"
    r"|failed permanently|delivery failure",
    re.IGNORECASE,
)
# Start of the returned copy of the original message in a classic bounce's text.
_COPY_MARKER = re.compile(
    r"^[ \t>-]*(?:below this line is a copy of the message|this is a copy of the message"
    r"|original message follows|original message headers|unsent message below"
    r"|undelivered message (?:headers )?follows|a copy of the original message below"
    r"|the original message headers|message headers follow|returned message follows"
    r"|-+ ?original message ?-+|-+ ?the header of the original message is following)",
    re.IGNORECASE | re.MULTILINE,
)
_EMBEDDED_HEADER = re.compile(
    r"^(?:return-path|received|dkim-signature|message-id|mime-version|x-mailer):[ \t]",
    re.IGNORECASE | re.MULTILINE,
)
_BODY_MESSAGE_ID = re.compile(r"^[ \t>]*message-id:[ \t]*(.{1,998})$", re.IGNORECASE | re.MULTILINE)
_BODY_RECIPIENT = re.compile(
    r"^[ \t]*<([^<>\s@]+@[^<>\s]+)>"  # "<user@example.com>: host ... said" (postfix/qmail)
    r"|^[ \t]+([^<>\s@:]+@[^<>\s:]+?)[ \t]*:?[ \t]*$"  # indented bare address (exim, gmail)
    r"|^([^<>\s@:]+@[^<>\s:]+?)[ \t]*:[ \t]*$",  # "user@example.com:" alone on a line
    re.MULTILINE,
)

# Out-of-office / auto-reply subjects.  Anchored prefixes are "clearly" automatic (the
# forms Exchange, Outlook, Gmail, Domino... write); a reply to one starts with "Re:".
_OOO_PREFIX = re.compile(
    r"^\s*(?:"
    r"automatic reply|auto(?:matic)?[- ]?(?:reply|response|answer)|autoreply|autoresponse"
    r"|out of (?:the )?office(?: auto ?reply| reply)?|ooo|away from (?:the )?office"
    r"|abwesenheitsnotiz|automatische antwort|abwesend|urlaubsnotiz"
    r"|respuesta autom[aá]tica|fuera de la oficina"
    r"|r[ée]ponse automatique|absence du bureau|message d'absence"
    r"|risposta automatica|fuori sede|automatisch antwoord|afwezig"
    r"|resposta autom[aá]tica|autosvar|automaattinen vastaus|automatisk svar"
    r"|odpowied[zź] automatyczna|automatick[aá] odpov[eě][dď]"
    r"|αυτόματη απάντηση|автоматический ответ|автоответ"
    r"|自動応答|自動返信|自动回复|自動回覆|자동 회신|자동 응답"
    r")\s*[:：]",
    re.IGNORECASE,
)
_OOO_ANYWHERE = re.compile(
    r"out of (?:the )?office|auto(?:matic)?[- ]?(?:reply|response|responder)|autoreply"
    r"|abwesenheit|automatische antwort|respuesta autom[aá]tica|r[ée]ponse automatique"
    r"|risposta automatica|automatisch antwoord|vacation|on holiday|on leave"
    r"|away from (?:the |my )?(?:office|desk)|absence|\bOOO\b|\bOOF\b",
    re.IGNORECASE,
)
_AUTO_REPLY_HEADER_VALUES = {
    # header: values that mean "automatic" (None: any value except an explicit no)
    "x-autoreply": None,
    "x-autorespond": None,
    "x-autoreply-from": None,
    "x-mail-autoreply": None,
    "x-autogenerated": {"reply"},
    "x-fc-machinegenerated": {"true", "yes"},
}
_HINT_HEADERS = (
    "x-auto-response-suppress",
    "x-ms-exchange-inbox-rules-loop",
    "x-ms-exchange-generated-message-source",
    "x-autogenerated",
    "x-loop",
    "precedence",
    "x-precedence",
)
_NO_VALUES = {"no", "false", "0", "off", "none"}


# ----------------------------------------------------------------------------- helpers


def _norm_addr(value: str) -> str | None:
    """``rfc822; <User@Example.com>`` -> ``user@example.com`` (None if no address)."""
    if not value:
        return None
    if ";" in value:
        value = value.split(";", 1)[1]
    m = _ADDR.search(value)
    if not m:
        return None
    addr = m.group(0).strip(".").lower()
    return addr if "@" in addr and len(addr) <= 320 else None


def _add(target: list[str], addr: str | None) -> None:
    if addr and addr not in target and len(target) < MAX_RECIPIENTS:
        target.append(addr)


def _first_token(value: str) -> str:
    return re.split(r"[\s;(,]", value.strip(), maxsplit=1)[0].lower() if value else ""


def _header_block(raw: bytes) -> Message | None:
    """Top-level header fields (compat32: raw strings, nothing is parsed eagerly)."""
    try:
        end = re.search(rb"\r?\n\r?\n", raw[:MAX_HEADER_BLOCK])
        block = raw[: end.end()] if end else raw[:MAX_HEADER_BLOCK]
        return BytesHeaderParser(policy=_policy.compat32).parsebytes(block)
    except Exception:  # noqa: BLE001
        return None


def _raw_value(msg: Message | None, name: str) -> str | None:
    if msg is None:
        return None
    try:
        for key, value in msg.raw_items():
            if key.lower() == name:
                return decode_header_value(str(value))
    except Exception:  # noqa: BLE001
        return None
    return None


# ----------------------------------------------------------------------------- MIME scan


@dataclass
class _Report:
    report_types: list[str] = field(default_factory=list)  # multipart/report report-type
    has_delivery_status: bool = False
    failed: list[str] = field(default_factory=list)
    delayed: list[str] = field(default_factory=list)
    other_actions: list[str] = field(default_factory=list)  # delivered / relayed / expanded
    returned_ids: list[str] = field(default_factory=list)
    has_mdn: bool = False
    has_feedback: bool = False

    @property
    def found(self) -> bool:
        return bool(self.report_types or self.has_delivery_status or self.has_mdn
                    or self.has_feedback)


def _ctype(part: Message) -> str:
    """Content type from the raw header (never raises; text/plain when unusable)."""
    value = None
    try:
        for key, v in part.raw_items():
            if key.lower() == "content-type":
                value = str(v)
                break
    except Exception:  # noqa: BLE001
        value = None
    if value is None:
        try:
            return part.get_default_type()
        except Exception:  # noqa: BLE001
            return "text/plain"
    m = _MEDIA_TYPE.match(value)
    return m.group(1).lower() if m else "text/plain"


def _raw_content_type(part: Message) -> str:
    try:
        for key, v in part.raw_items():
            if key.lower() == "content-type":
                return str(v)
    except Exception:  # noqa: BLE001
        return ""
    return ""


_FIELD = re.compile(r"^([\x21-\x39\x3b-\x7e]+)[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.MULTILINE)


def _status_blocks(part: Message) -> list[dict[str, str]]:
    """The field groups of a message/delivery-status part, names lower-cased."""
    blocks: list[dict[str, str]] = []
    payload = part.get_payload()
    if isinstance(payload, list):  # the stdlib parsed each group as a header block
        for block in payload[:MAX_RECIPIENTS + 1]:
            if not isinstance(block, Message):
                continue
            fields: dict[str, str] = {}
            for key, value in block.raw_items():
                fields.setdefault(key.lower(), decode_header_value(str(value)))
            if fields:
                blocks.append(fields)
        return blocks
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        text = data.decode("utf-8", "replace")
    else:
        text = str(payload or "")
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text)[: MAX_RECIPIENTS + 1]:
        fields = {}
        for m in _FIELD.finditer(chunk):
            fields.setdefault(m.group(1).lower(), decode_header_value(m.group(2)))
        if fields:
            blocks.append(fields)
    return blocks


def _returned_message_id(part: Message, ctype: str) -> list[str]:
    """Message-ID of a returned message/rfc822 (or text/rfc822-headers) part."""
    headers: Message | None = None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        headers = payload[0]
    else:  # text/rfc822-headers, or an encoded message/* the parser did not open
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            data = str(payload or "").encode("utf-8", "surrogateescape")
        headers = _header_block(data.lstrip(b"\r\n"))
    value = _raw_value(headers, "message-id")
    return extract_message_ids(value)[:1] if value else []


def _scan_mime(raw: bytes, report: _Report, pol) -> None:
    msg = BytesParser(policy=pol).parsebytes(raw)
    stack: list[tuple[Message, str]] = [(msg, "")]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, parent = stack.pop()
        seen += 1
        ctype = _ctype(part)
        if ctype.startswith("multipart/"):
            if ctype == "multipart/report":
                m = _REPORT_TYPE.search(_raw_content_type(part))
                report.report_types.append(m.group(1).lower() if m else "")
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((c, ctype) for c in reversed(children) if isinstance(c, Message))
        elif ctype in ("message/delivery-status", "message/global-delivery-status"):
            report.has_delivery_status = True
            _read_delivery_status(part, report)
        elif ctype in ("message/disposition-notification",
                       "message/global-disposition-notification"):
            report.has_mdn = True
        elif ctype == "message/feedback-report":
            report.has_feedback = True
        elif ctype in ("message/rfc822", "message/global", "text/rfc822-headers",
                       "message/global-headers"):
            # Only a part of a report (or of a bounce's multipart/mixed) is "returned";
            # never the top-level message itself.
            for mid in _returned_message_id(part, ctype) if parent else []:
                if mid not in report.returned_ids:
                    report.returned_ids.append(mid)


def _read_delivery_status(part: Message, report: _Report) -> None:
    for fields in _status_blocks(part):
        original = _norm_addr(fields.get("original-recipient", ""))
        final = _norm_addr(fields.get("final-recipient", ""))
        addr = original or final  # what we addressed, before alias expansion
        if not addr:
            continue
        action = _first_token(fields.get("action", ""))
        status = fields.get("status", "").strip()
        if action == "failed" or (not action and status[:1] == "5"):
            _add(report.failed, addr)
        elif action == "delayed" or (not action and status[:1] == "4"):
            _add(report.delayed, addr)
        elif action:
            _add(report.other_actions, f"{action}: {addr}")


def _scan(raw: bytes) -> _Report:
    """Report structure of ``raw``: policy.default first, compat32 if that fails or finds
    no report part (it is laxer with odd boundaries)."""
    best = _Report()
    for pol in (_policy.default, _policy.compat32):
        report = _Report()
        try:
            _scan_mime(raw, report, pol)
        except Exception as exc:  # noqa: BLE001 - try the next policy
            log.debug("MIME scan with %s failed: %r", pol, exc)
            if not report.found:
                continue
        if report.failed or report.delayed or report.returned_ids:
            return report
        if report.found and not best.found:
            best = report
    return best


# ----------------------------------------------------------------------------- classify


_REPORT_PART = re.compile(
    rb"message/(?:global-)?(?:delivery-status|disposition-notification|feedback-report)")


def _has_report_part(raw: bytes) -> bool:
    """A report part anywhere in the first 4 MiB (any case). Lower-casing a copy and
    searching for a literal-led pattern is six times faster than a case-insensitive
    search, which cannot skip ahead (0.36 -> 0.06 ms per message of the ingest benchmark)."""
    low = raw[:MAX_HEADER_BLOCK * 4].lower()
    return b"message/" in low and _REPORT_PART.search(low) is not None


def classify(raw: bytes, parsed: ParsedMessage) -> Classification:
    """Classify one incoming message.  Never raises (neutral result on internal error)."""
    try:
        return _classify(raw, parsed)
    except Exception:
        log.exception("could not classify a message; treating it as ordinary mail")
        return Classification()


def classify_headers(raw: bytes, parsed: ParsedMessage) -> Classification | None:
    """:func:`classify` for a message parsed headers-only (``parse.parse_headers``), or
    None when the answer may depend on the body: reports, and mail from MAILER-DAEMON,
    a null Return-Path or naming failed recipients -- parse those whole and classify them.
    For everything else the body is never consulted, so the result is the same."""
    try:
        return _classify(raw, parsed, headers_only=True)
    except Exception:
        log.exception("could not classify a message from its headers")
        return None


def _classify(raw: bytes, parsed: ParsedMessage, headers_only: bool = False
              ) -> Classification | None:
    if not isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw or b"")
    raw = bytes(raw)
    headers = {k.lower(): (v or "") for k, v in (parsed.headers or {}).items()}
    top = _header_block(raw)

    def header(name: str) -> str | None:
        if name in headers:
            return headers[name]
        return _raw_value(top, name)

    c = Classification()
    reasons = c.reasons
    subject = parsed.subject or ""
    sender = parsed.from_.email if parsed.from_ and parsed.from_.email else ""
    local = sender.rsplit("@", 1)[0] if "@" in sender else sender
    return_path = header("return-path")
    null_path = return_path is not None and bool(_NULL_PATH.match(return_path))
    daemon = bool(_DAEMON_LOCAL.match(local))
    if not daemon and return_path and not null_path:
        rp = _norm_addr(return_path)
        daemon = bool(rp and _MAILER_DAEMON_LOCAL.match(rp.rsplit("@", 1)[0]))
    content_type = headers.get("content-type") or _raw_value(top, "content-type") or ""
    top_type = (_MEDIA_TYPE.match(content_type).group(1).lower()
                if _MEDIA_TYPE.match(content_type) else "")

    # ---------------------------------------------------------------- delivery reports
    x_failed: list[str] = []
    for value in (header("x-failed-recipients") or "").split(","):
        _add(x_failed, _norm_addr(value))
    report = _Report()
    if headers_only and (daemon or null_path or x_failed or top_type == "multipart/report"):
        return None
    if (top_type.startswith("multipart/") and (
            top_type == "multipart/report" or daemon or null_path or x_failed
            or _has_report_part(raw))):
        if headers_only:
            return None
        report = _scan(raw)

    own_ids = {parsed.message_id} if parsed.message_id else set()
    returned = [mid for mid in report.returned_ids if mid not in own_ids]
    body = (parsed.text or "")[:MAX_BODY_SCAN]
    is_dsn = report.has_delivery_status or "delivery-status" in report.report_types
    ours = {a.email for a in parsed.to + parsed.cc if a.email} | {sender}

    if is_dsn:
        if report.failed:
            c.is_bounce = True
            c.failed_recipients = report.failed
            reasons.append(f"delivery status report for {', '.join(report.failed)}")
        if report.delayed:
            c.delayed_recipients = report.delayed
            reasons.append(f"delivery delayed for {', '.join(report.delayed)}")
        if not report.failed and not report.delayed:
            if report.other_actions and not x_failed:
                reasons.append("delivery status report: " + ", ".join(report.other_actions))
            elif _DELAY_TEXT.search(subject) or _DELAY_TEXT.search(body[:4000]):
                reasons.append("delivery delay warning")
            else:  # a report without readable recipients: trust the text
                c.is_bounce = True
                c.failed_recipients = x_failed or _body_recipients(body, ours)
                reasons.append("delivery status report"
                               + (f" for {', '.join(c.failed_recipients)}"
                                  if c.failed_recipients else ""))
        c.is_auto_submitted = True
        if null_path:
            reasons.append("null Return-Path <>")
    elif (daemon or null_path) and (
            x_failed or _BOUNCE_SUBJECT.search(subject) or _FAILURE_TEXT.search(body[:8000])
            or _DELAY_TEXT.search(subject) or _DELAY_TEXT.search(body[:4000])):
        if _DELAY_TEXT.search(subject) or (
                not x_failed and _DELAY_TEXT.search(body[:4000])
                and not _BOUNCE_SUBJECT.search(subject)):
            c.is_auto_submitted = True
            c.delayed_recipients = _body_recipients(body, ours)
            reasons.append("delivery delay warning from " + (sender or "a null Return-Path"))
        else:
            c.is_bounce = True
            c.failed_recipients = x_failed or _body_recipients(body, ours)
            who = f"{sender}" if sender else "a null Return-Path"
            reasons.append(
                f"bounce from {who}"
                + (f" for {', '.join(c.failed_recipients)}" if c.failed_recipients else ""))
            if x_failed:
                reasons.append(f"X-Failed-Recipients: {', '.join(x_failed)}")
            c.is_auto_submitted = True
        if not returned:
            returned = [mid for mid in _body_message_ids(body) if mid not in own_ids]
    elif x_failed and (daemon or null_path or _BOUNCE_SUBJECT.search(subject)):
        c.is_bounce = True
        c.failed_recipients = x_failed
        reasons.append(f"X-Failed-Recipients: {', '.join(x_failed)}")

    if c.is_bounce or c.delayed_recipients or (is_dsn and returned):
        fallback = [m for m in parsed.in_reply_to + list(reversed(parsed.references))
                    if m and m not in own_ids]
        candidates = returned or fallback
        if candidates:
            c.bounced_message_id = candidates[0][:998]
            reasons.append(f"returned message <{c.bounced_message_id}>")

    if report.has_mdn or "disposition-notification" in report.report_types:
        c.is_auto_submitted = True
        reasons.append("read receipt (disposition notification)")
    if report.has_feedback or "feedback-report" in report.report_types:
        c.is_auto_submitted = True
        reasons.append("feedback report (ARF)")

    # ---------------------------------------------------------------- auto-replies
    auto_submitted = header("auto-submitted")
    if auto_submitted is not None:
        token = _first_token(auto_submitted)
        if token and token != "no":
            c.is_auto_submitted = True
            reasons.append(f"Auto-Submitted: {auto_submitted[:100]}")
    for name, accepted in _AUTO_REPLY_HEADER_VALUES.items():
        value = header(name)
        if value is None:
            continue
        token = _first_token(value)
        if (accepted is None and token not in _NO_VALUES) or (accepted and token in accepted):
            c.is_auto_submitted = True
            reasons.append(f"{_title(name)}: {value[:100]}" if value else _title(name))
    precedence = header("precedence")
    precedence_token = _first_token(precedence or "")
    x_precedence_token = _first_token(header("x-precedence") or "")
    if "auto_reply" in (precedence_token, x_precedence_token):
        c.is_auto_submitted = True
        reasons.append("Precedence: auto_reply")
    x_post = header("x-post-messageclass")
    if x_post and "autoresponder" in x_post.lower():
        c.is_auto_submitted = True
        reasons.append(f"X-POST-MessageClass: {x_post[:100]}")
    if _MAILER_DAEMON_LOCAL.match(local) and not c.is_auto_submitted:
        c.is_auto_submitted = True
        reasons.append(f"sent by {sender}")

    if _OOO_PREFIX.match(subject):
        reasons.append(f"subject looks like an automatic reply: {subject[:80]!r}")
        c.is_auto_submitted = True
    elif not c.is_auto_submitted and _OOO_ANYWHERE.search(subject):
        hints = [_title(h) for h in _HINT_HEADERS if header(h) is not None]
        if null_path:
            hints.append("null Return-Path")
        if hints:
            c.is_auto_submitted = True
            reasons.append(f"subject {subject[:80]!r} with {', '.join(hints)}")

    # ---------------------------------------------------------------- lists and bulk
    list_id = header("list-id")
    if list_id is not None:
        c.is_list = True
        reasons.append(f"List-Id: {list_id[:200]}")
    if header("list-unsubscribe") is not None:
        c.is_list = True
        reasons.append("List-Unsubscribe")
    for token, name in ((precedence_token, "Precedence"), (x_precedence_token, "X-Precedence")):
        if token in ("bulk", "list", "junk"):
            c.is_list = True
            reasons.append(f"{name}: {token}")
    if not c.is_list:  # RFC 2369 list headers other than the two above
        for name in ("list-post", "list-help", "list-subscribe", "list-owner", "list-archive"):
            if header(name) is not None:
                c.is_list = True
                reasons.append(_title(name))
                break

    # ---------------------------------------------------------------- suppression
    suppress = header("x-auto-response-suppress")
    if suppress is not None:
        tokens = {t.strip().lower() for t in re.split(r"[,;\s]+", suppress) if t.strip()}
        if tokens & {"all", "oof", "autoreply"}:
            c.suppress_autoreply = True
            reasons.append(f"X-Auto-Response-Suppress: {suppress[:100]}")
    if c.is_bounce or c.is_auto_submitted or c.is_list:
        c.suppress_autoreply = True
    return c


def _title(name: str) -> str:
    return "-".join(p.upper() if p in ("ms", "fc") else p.capitalize() for p in name.split("-"))


def _notice_part(body: str) -> str:
    """The bounce notice itself: its text before the returned copy of the message."""
    cut = len(body)
    for pattern in (_COPY_MARKER, _EMBEDDED_HEADER):
        m = pattern.search(body)
        if m:
            cut = min(cut, m.start())
    return body[:cut]


def _body_recipients(body: str, ours: set[str]) -> list[str]:
    found: list[str] = []
    for m in _BODY_RECIPIENT.finditer(_notice_part(body)):
        addr = _norm_addr(next(g for g in m.groups() if g))
        if addr and addr not in ours and not _DAEMON_LOCAL.match(addr.rsplit("@", 1)[0]):
            _add(found, addr)
    return found


def _body_message_ids(body: str) -> list[str]:
    """Message-IDs of the copy of the original message quoted in a classic bounce."""
    ids: list[str] = []
    for m in _BODY_MESSAGE_ID.finditer(body):
        for mid in extract_message_ids(m.group(1))[:1]:
            if mid not in ids:
                ids.append(mid)
    return ids
