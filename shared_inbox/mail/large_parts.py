"""Large base64 attachments decoded straight into storage, never whole in memory.

The stdlib parser holds a message's raw text, its own str copy of every part and the
decoded payload: a 25 MB attachment costs five times its size.  Before parsing, this
module scans the raw bytes for MIME leaf parts with a large, cleanly base64-encoded body,
decodes each in chunks into the attachment storage (hashing as it goes), and hands the
parser a copy of the message in which those bodies are a short marker.  The parser still
sees every header (filename, type, Content-ID); the markers it returns as attachment
payloads are swapped for :class:`StoredAttachment` objects that carry the storage key,
size and SHA-256 instead of the bytes.

Correctness first: a part is streamed only if its body is clean standard base64 (so it
cannot contain a boundary line), and only if the parser then reports exactly one
attachment per marker; anything else falls back to parsing the original bytes.  Leaves
inside ``message/rfc822`` parts are never streamed (the embedded message is kept whole).
"""
from __future__ import annotations

import binascii
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

from .parse import ParsedAttachment, ParsedMessage, parse_message

log = logging.getLogger("shared_inbox.large_parts")

CHUNK = 1024 * 1024  # encoded bytes decoded at a time
MAX_HEADER_BLOCK = 256 * 1024
MAX_DEPTH = 20
MAX_PARTS = 1000
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_WHITESPACE = b" \t\r\n"
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:|[ \t]")


@dataclass
class StoredAttachment(ParsedAttachment):
    """An attachment already in storage: ``payload`` is empty, the bytes are at
    ``storage_key`` (``size`` bytes, SHA-256 ``sha256``)."""

    storage_key: str = ""
    size: int = 0
    sha256: str = ""


def attachment_digest(att: ParsedAttachment) -> bytes:
    """SHA-256 of an attachment's bytes, whether in memory or already stored."""
    stored = getattr(att, "sha256", "")
    return bytes.fromhex(stored) if stored else hashlib.sha256(att.payload).digest()


class _NotClean(Exception):
    """The body is not clean base64: leave the part to the ordinary parser."""


@dataclass
class _Span:
    start: int  # body of a leaf part: raw[start:end]
    end: int


# ----------------------------------------------------------------------------- scanning


def _header_block(raw: bytes, start: int, end: int) -> tuple[object, int] | None:
    """(headers, body start) of the entity at ``raw[start:end]``, or None when unsure."""
    if raw.startswith((b"\r\n", b"\n"), start):
        return None  # no headers: a default text/plain part, never streamed
    m = _BLANK_LINE.search(raw, start, min(end, start + MAX_HEADER_BLOCK))
    if m is None:
        return None
    block = raw[start:m.start()]
    for line in re.split(rb"\r?\n", block):
        if not _HEADER_LINE.match(line):
            return None  # the parser would end the headers early: not our guess to make
    headers = BytesHeaderParser(policy=compat32).parsebytes(block + b"\r\n\r\n")
    if headers.defects:
        return None
    return headers, m.end()


def delimiter_lines(raw: bytes, boundary: bytes, pos: int, end: int):
    """``(line start, line end, is close)`` of each boundary delimiter line in
    ``raw[pos:end]``: what ``re.finditer(rb"^--B(--)?[ \\t]*\\r?$", raw, re.M)`` finds,
    by ``bytes.find`` (a regex anchored at line starts cannot skip ahead, and scanning a
    message of several MB with it cost milliseconds)."""
    needle = b"--" + boundary
    while True:
        i = raw.find(needle, pos, end)
        if i < 0:
            return
        pos = i + 1
        if i and raw[i - 1] != 0x0A:
            continue  # not at the start of a line
        k = i + len(needle)
        close = raw.startswith(b"--", k, end)
        if close:
            k += 2
        while k < end and raw[k] in (0x20, 0x09):
            k += 1
        if k < end and raw[k] == 0x0D:
            k += 1
        if k == end or raw[k] == 0x0A:
            yield i, k, close


def _scan(raw: bytes, start: int, end: int, threshold: int, depth: int,
          out: list[_Span], budget: list[int]) -> None:
    """Append to ``out`` the large base64 leaves of the entity ``raw[start:end]``."""
    budget[0] -= 1
    if depth > MAX_DEPTH or budget[0] < 0:
        raise _NotClean("structure too deep or too large to scan")
    found = _header_block(raw, start, end)
    if found is None:
        return
    headers, body = found
    ctype = headers.get_content_type()
    major = ctype.split("/", 1)[0]
    if major == "message":
        return  # embedded messages are kept whole
    if major == "multipart":
        boundary = headers.get_boundary()
        if not boundary:
            return
        part_start = None
        for line_start, line_end, close in delimiter_lines(
                raw, boundary.encode("ascii", "surrogateescape"), body, end):
            if part_start is not None:
                # The line break before a delimiter belongs to the delimiter.
                stop = line_start - (2 if raw[line_start - 2:line_start] == b"\r\n" else 1)
                _scan(raw, part_start, max(stop, part_start), threshold, depth + 1, out, budget)
            if close:
                return
            part_start = line_end + (2 if raw.startswith(b"\r\n", line_end) else 1)
        return  # no close delimiter: the last part is left to the parser
    if end - body <= threshold:
        return
    if ctype in ("text/plain", "text/html") and headers.get_content_disposition() != "attachment":
        return  # may be the message body, which the parser must read
    cte = (headers.get("content-transfer-encoding") or "").strip().lower()
    if cte == "base64":
        out.append(_Span(body, end))


def find_large_parts(raw: bytes, threshold: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each large base64 leaf body in ``raw`` (empty when unsure)."""
    spans: list[_Span] = []
    try:
        _scan(raw, 0, len(raw), threshold, 0, spans, [MAX_PARTS])
    except (_NotClean, RecursionError, ValueError, UnicodeError):
        return []
    return [(s.start, s.end) for s in spans]


# ----------------------------------------------------------------------------- decoding


def decode_base64_chunks(raw: bytes, start: int, end: int):
    """Yield the decoded bytes of ``raw[start:end]`` piece by piece; raise _NotClean unless
    it is well-formed standard base64 (whitespace anywhere, ``=`` only at the very end) --
    the same rule as the parser's own clean decoder, so the bytes are the ones it would
    produce."""
    carry = b""
    padding = 0
    view = memoryview(raw)
    for pos in range(start, end, CHUNK):
        chunk = bytes(view[pos:min(pos + CHUNK, end)]).translate(None, _WHITESPACE)
        if not chunk:
            continue
        if padding:
            raise _NotClean("data after the padding")
        eq = chunk.find(b"=")
        if eq >= 0:
            pad = chunk[eq:]
            if pad not in (b"=", b"=="):
                raise _NotClean("padding inside the data")
            chunk, padding = chunk[:eq], len(pad)
        if chunk.translate(None, _B64_ALPHABET):
            raise _NotClean("characters outside the base64 alphabet")
        if carry:
            chunk = carry + chunk
        if padding:
            if len(chunk) % 4 + padding != 4:
                raise _NotClean("wrong padding")
            yield binascii.a2b_base64(chunk + b"=" * padding)
            carry = b""
        else:
            cut = len(chunk) - len(chunk) % 4
            yield binascii.a2b_base64(chunk[:cut])
            carry = chunk[cut:]
    if carry:
        raise _NotClean("missing padding")


# ----------------------------------------------------------------------------- parsing


def parse_with_large_parts(raw: bytes, storage, threshold: int) -> tuple[ParsedMessage, bytes]:
    """``parse_message(raw)``, with large base64 attachments already stored.

    Returns the parsed message and the bytes it was parsed from (``raw`` itself, or the
    smaller copy with markers; same headers and structure, for classification).  The
    original ``raw`` is untouched: the caller stores it whole as today.
    """
    if (not threshold or threshold <= 0 or len(raw) <= threshold
            or not hasattr(storage, "put_stream") or not isinstance(raw, bytes)):
        return parse_message(raw), raw
    spans = find_large_parts(raw, threshold)
    if not spans:
        return parse_message(raw), raw
    nonce = secrets.token_hex(16)
    stored: dict[bytes, tuple[str, int, str]] = {}
    pieces: list = []
    view = memoryview(raw)
    pos = 0
    for index, (start, end) in enumerate(spans):
        try:
            key, size, sha256 = storage.put_stream(decode_base64_chunks(raw, start, end),
                                                   kind="att")
        except _NotClean:
            continue  # this part stays in the message for the parser
        marker = f"shared-inbox large part {index} {nonce}".encode("ascii")
        stored[marker] = (key, size, sha256)
        pieces += [view[pos:start], binascii.b2a_base64(marker, newline=False)]
        pos = end
    if not stored:
        return parse_message(raw), raw
    pieces.append(view[pos:])
    reduced = b"".join(pieces)
    del pieces, view
    parsed = parse_message(reduced)
    seen = 0
    for i, att in enumerate(parsed.attachments):
        found = stored.get(att.payload)
        if found is None:
            continue
        seen += 1
        key, size, sha256 = found
        parsed.attachments[i] = StoredAttachment(
            filename=att.filename, content_type=att.content_type, payload=b"",
            content_id=att.content_id, is_inline=att.is_inline,
            storage_key=key, size=size, sha256=sha256)
    if seen != len(stored) or parsed.is_malformed:
        # The parser saw the structure differently: parse the original (the stored files
        # are content-addressed, so they are simply the same files written once more).
        log.info("large-part scan disagreed with the parser; parsing the whole message")
        return parse_message(raw), raw
    return parsed, reduced
