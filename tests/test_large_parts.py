"""Large attachments are decoded straight into storage, and nothing about the mail changes.

A message with a multi-megabyte base64 attachment is polled from a real IMAP server: the
attachment downloads byte for byte under its name and type, the original downloads byte for
byte, the same mail delivered twice stays one message.  Every shape the scanner might
misread (nested multiparts, embedded messages, broken base64, broken boundaries) must give
exactly what the ordinary parser gives.  Memory is measured by ``benchmarks/ingest.py --big``.
"""
from __future__ import annotations

import base64
import hashlib
import random
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fuzz_mime import PROFILE, hostile_message
from test_poll import add_mailbox, poll

from shared_inbox.mail.large_parts import StoredAttachment, delimiter_lines, parse_with_large_parts
from shared_inbox.mail.parse import parse_message
from shared_inbox.services.ingest import fingerprint
from shared_inbox.storage import FilesystemStorage

THRESHOLD = 1024 * 1024
BIG = random.Random(3).randbytes(5_000_000)
OTHER = random.Random(4).randbytes(1_500_000)


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def head(subject: str, ctype: str, msgid: str) -> bytes:
    return (f"From: Alice Example <alice@example.org>\r\nTo: support@example.com\r\n"
            f"Subject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{msgid}@example.org>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {ctype}\r\n\r\n").encode()


def attachment(boundary: str, name: str, ctype: str, data: bytes, *, cid: str | None = None,
               disposition: str = "attachment") -> bytes:
    lines = [f"--{boundary}", f'Content-Type: {ctype}; name="{name}"',
             f'Content-Disposition: {disposition}; filename="{name}"',
             "Content-Transfer-Encoding: base64"]
    if cid:
        lines.append(f"Content-ID: <{cid}>")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + b64(data)


def text_part(boundary: str, text: str, ctype: str = "text/plain") -> bytes:
    return f"--{boundary}\r\nContent-Type: {ctype}; charset=utf-8\r\n\r\n{text}\r\n".encode()


def simple_mail(subject="Backup", msgid="backup-1", data=BIG) -> bytes:
    return (head(subject, 'multipart/mixed; boundary="outer"', msgid)
            + b"This is a multi-part message.\r\n"
            + text_part("outer", "Here is the backup you asked for.")
            + attachment("outer", "backup.zip", "application/zip", data)
            + b"--outer--\r\n")


def nested_mail() -> bytes:
    """mixed > [alternative > [text, related > [html, big cid image]], message/rfc822 holding
    a large attachment, a second large attachment]"""
    inner = simple_mail("Forwarded backup", "inner-1", OTHER)
    return (head("Nested", 'multipart/mixed; boundary="m"', "nested-1")
            + b"--m\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n"
            + text_part("a", "See the picture.")
            + b"--a\r\nContent-Type: multipart/related; boundary=\"r\"\r\n\r\n"
            + text_part("r", '<p>See <img src="cid:photo@x"></p>', "text/html")
            + attachment("r", "photo.png", "image/png", BIG, cid="photo@x", disposition="inline")
            + b"--r--\r\n--a--\r\n"
            + b"--m\r\nContent-Type: message/rfc822\r\n\r\n" + inner
            + attachment("m", "report.pdf", "application/pdf", OTHER)
            + b"--m--\r\n")


def summary(parsed, storage) -> dict:
    """What a person would see of a parsed message, attachment bytes included."""
    def data(att):
        return storage.get(att.storage_key) if isinstance(att, StoredAttachment) else att.payload
    return {
        "subject": parsed.subject, "text": parsed.text, "html": parsed.html,
        "message_id": parsed.message_id, "malformed": parsed.is_malformed,
        "error": parsed.error, "defects": parsed.defects, "headers": parsed.headers,
        "attachments": [(a.filename, a.content_type, a.content_id, a.is_inline,
                         hashlib.sha256(data(a)).hexdigest(), len(data(a)))
                        for a in parsed.attachments],
        "fingerprint": fingerprint(parsed),
    }


@pytest.fixture
def storage(tmp_path):
    return FilesystemStorage(str(tmp_path / "store"))


def same_as_ordinary_parse(raw: bytes, storage) -> tuple[list, bytes]:
    parsed, parsed_raw = parse_with_large_parts(raw, storage, THRESHOLD)
    assert summary(parsed, storage) == summary(parse_message(raw), storage)
    return [a for a in parsed.attachments if isinstance(a, StoredAttachment)], parsed_raw


# ----------------------------------------------------------------------------- parsing


def test_a_large_attachment_is_stored_while_parsing_and_the_parser_sees_a_small_message(
        storage):
    raw = simple_mail()
    stored, parsed_raw = same_as_ordinary_parse(raw, storage)
    assert [(a.filename, a.size) for a in stored] == [("backup.zip", len(BIG))]
    assert stored[0].sha256 == hashlib.sha256(BIG).hexdigest()
    assert storage.get(stored[0].storage_key) == BIG
    assert len(parsed_raw) < 10_000  # the parser never saw the 6.7 MB of base64
    # Nothing half-written is left next to the stored files.
    assert not list(Path(storage.root).rglob(".partial-*"))


def test_nested_multiparts_are_streamed_and_embedded_messages_kept_whole(storage):
    stored, _ = same_as_ordinary_parse(nested_mail(), storage)
    # The cid image and the PDF are streamed; the forwarded .eml (and the attachment
    # inside it) stays an ordinary, complete attachment.
    assert sorted(a.filename for a in stored) == ["photo.png", "report.pdf"]
    parsed, _ = parse_with_large_parts(nested_mail(), storage, THRESHOLD)
    eml = next(a for a in parsed.attachments if a.content_type == "message/rfc822")
    assert parse_message(eml.payload).attachments[0].payload == OTHER
    assert next(a for a in parsed.attachments if a.filename == "photo.png").is_inline


def test_a_message_that_is_one_large_attachment(storage):
    raw = (head("Scan", "application/pdf; name=scan.pdf", "scan-1").replace(
        b"MIME-Version", b"Content-Transfer-Encoding: base64\r\nMIME-Version") + b64(BIG))
    stored, _ = same_as_ordinary_parse(raw, storage)
    assert [a.size for a in stored] == [len(BIG)]


def test_large_text_bodies_and_small_messages_take_the_ordinary_path(storage):
    body = base64.encodebytes(("Hello there. " * 200_000).encode()).replace(b"\n", b"\r\n")
    raw = head("Long", "text/plain; charset=utf-8", "long-1").replace(
        b"MIME-Version", b"Content-Transfer-Encoding: base64\r\nMIME-Version") + body
    stored, parsed_raw = same_as_ordinary_parse(raw, storage)
    assert stored == [] and parsed_raw is raw
    small = simple_mail(data=b"tiny zip")
    stored, parsed_raw = same_as_ordinary_parse(small, storage)
    assert stored == [] and parsed_raw is small


@pytest.mark.parametrize("damage", [
    "junk-in-base64", "boundary-inside-base64", "missing-padding", "no-close-delimiter",
    "wrong-boundary", "data-after-padding", "header-without-colon",
])
def test_malformed_large_parts_give_what_the_ordinary_parser_gives(storage, damage):
    raw = simple_mail()
    encoded = b64(BIG)
    if damage == "junk-in-base64":
        raw = raw.replace(encoded[:7000], encoded[:3000] + b"!!**\r\n" + encoded[3000:7000])
    elif damage == "boundary-inside-base64":
        raw = raw.replace(encoded[:7000], encoded[:3002] + b"\r\n--outer\r\n" + encoded[3002:7000])
    elif damage == "missing-padding":
        tail = b64(BIG)[-20:]
        raw = raw.replace(tail, tail.replace(b"=", b""))
        assert raw != simple_mail()
    elif damage == "no-close-delimiter":
        raw = raw[:raw.rindex(b"--outer--")]
    elif damage == "wrong-boundary":
        raw = raw.replace(b'boundary="outer"', b'boundary="other"')
    elif damage == "data-after-padding":
        assert encoded.rstrip().endswith(b"=")
        raw = raw.replace(b"\r\n--outer--", b"\r\nQUJD\r\n--outer--")
    elif damage == "header-without-colon":
        raw = raw.replace(b"Content-Transfer-Encoding: base64",
                          b"Content-Transfer-Encoding: base64\r\nnot a header line")
    assert raw != simple_mail()
    stored, _ = same_as_ordinary_parse(raw, storage)
    assert stored == []  # the scan was unsure: the ordinary parser read it all


@settings(PROFILE)
@given(hostile_message())
def test_hostile_mime_with_every_part_large_gives_what_the_ordinary_parser_gives(tmp_path, raw):
    # A threshold of a few bytes makes every base64 leaf of the generated (bad boundaries,
    # broken base64, truncation, nesting...) mail a candidate for streaming.
    storage = FilesystemStorage(str(tmp_path / "fuzz"))
    parsed, _ = parse_with_large_parts(raw, storage, 8)
    assert summary(parsed, storage) == summary(parse_message(raw), storage)


@st.composite
def plausible_entity(draw, eol: bytes, depth: int = 0) -> bytes:
    """Mostly well-formed MIME with base64 leaves: the shapes real clients send, with
    their small variations (line ends, line lengths, blank lines, boundary whitespace)."""
    if depth < 3 and draw(st.integers(0, 2)) == 0:
        boundary = draw(st.sampled_from(["b", "=_x", "part.1", "b" + str(depth)]))
        sub = draw(st.sampled_from(["mixed", "related", "alternative"]))
        out = f'Content-Type: multipart/{sub};{draw(st.sampled_from([" ", eol.decode() + " "]))}'
        out = out.encode() + f'boundary="{boundary}"'.encode() + eol + eol
        out += draw(st.sampled_from([b"", b"preamble" + eol]))
        for child in draw(st.lists(plausible_entity(eol, depth + 1), min_size=1, max_size=3)):
            out += f"--{boundary}".encode() + draw(st.sampled_from([b"", b" ", b"\t"])) + eol
            out += child + eol
        if draw(st.integers(0, 4)):
            out += f"--{boundary}--".encode() + eol + draw(st.sampled_from([b"", b"epi" + eol]))
        return out
    if depth and draw(st.integers(0, 5)) == 0:
        return b"Content-Type: message/rfc822" + eol + eol + draw(plausible_entity(eol, 3))
    ctype = draw(st.sampled_from(["application/pdf", "image/png", "text/plain", "text/csv",
                                  "text/html", "application/octet-stream"]))
    data = draw(st.binary(max_size=300))
    width = draw(st.sampled_from([76, 64, 4, 1000]))
    text = base64.b64encode(data)
    lines = [text[i:i + width] for i in range(0, len(text), width)]
    body = eol.join(lines) + draw(st.sampled_from([b"", eol, eol + eol, b" "]))
    disposition = draw(st.sampled_from([b"", b"Content-Disposition: attachment; filename=f.bin"
                                        + eol, b"Content-Disposition: inline" + eol]))
    return (b"Content-Type: " + ctype.encode() + eol + disposition
            + b"Content-Transfer-Encoding: " + draw(st.sampled_from([b"base64", b"BASE64 "]))
            + eol + eol + body)


@st.composite
def plausible_message(draw) -> bytes:
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    raw = (b"From: a@example.org" + eol + b"Subject: s" + eol + b"Message-ID: <m@x>" + eol
           + b"MIME-Version: 1.0" + eol + draw(plausible_entity(eol)))
    if draw(st.integers(0, 3)) == 0:  # one stray edit anywhere
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"-", b"=", b"\n", b"--b\n", b"!", b""])) + raw[at:]
    return raw


@settings(PROFILE)
@given(plausible_message())
def test_plausible_mime_with_every_part_large_gives_what_the_ordinary_parser_gives(
        tmp_path, raw):
    storage = FilesystemStorage(str(tmp_path / "plausible"))
    parsed, _ = parse_with_large_parts(raw, storage, 8)
    assert summary(parsed, storage) == summary(parse_message(raw), storage)


def test_a_storage_without_streaming_gets_the_ordinary_parse(tmp_path):
    class PlainStorage:  # a host's own storage: put / get / delete only
        def __init__(self):
            self.files = {}

        def put(self, data, *, kind, suffix=""):
            key = f"{kind}/{hashlib.sha256(data).hexdigest()}{suffix}"
            self.files[key] = data
            return key

        def get(self, key):
            return self.files[key]

        def delete(self, key):
            self.files.pop(key, None)

    raw = simple_mail()
    parsed, parsed_raw = parse_with_large_parts(raw, PlainStorage(), THRESHOLD)
    assert parsed_raw is raw and parsed.attachments[0].payload == BIG


# ----------------------------------------------------------------------------- end to end


def _attachments(host):
    with host.app.app_context():
        m = host.inbox.models
        rows = host.db.session.scalars(sa.select(m.Attachment).order_by(m.Attachment.id)).all()
        return [(a.id, a.filename, a.content_type, a.size, a.message.ticket_id, a.message_id)
                for a in rows]


def test_a_polled_large_attachment_downloads_byte_for_byte_and_dedupes(host, mail_server):
    raw = simple_mail()
    mail_server.deliver("support@example.com", raw)
    support = add_mailbox(host, mail_server, "support@example.com")
    assert poll(host, support).ingested == 1

    [(att_id, name, ctype, size, ticket_id, message_id)] = _attachments(host)
    assert (name, ctype, size) == ("backup.zip", "application/zip", len(BIG))
    client = host.app.test_client()
    host.login(client, host.add_user("boss@x.test", role="admin"))
    page = client.get(f"/support/tickets/{ticket_id}").get_data(as_text=True)
    assert "backup.zip" in page and "Here is the backup you asked for." in page
    download = client.get(f"/support/attachments/{att_id}")
    assert download.status_code == 200 and download.data == BIG
    assert "backup.zip" in download.headers["Content-Disposition"]
    original = client.get(f"/support/messages/{message_id}/original")
    assert original.status_code == 200 and original.data.replace(b"\r\n", b"\n") \
        == raw.replace(b"\r\n", b"\n")

    # The same mail again (a re-delivery, and a copy to a second mailbox): still one message.
    mail_server.deliver("support@example.com", raw)
    mail_server.deliver("sales@example.com", raw)
    sales = add_mailbox(host, mail_server, "sales@example.com")
    assert poll(host, support).ingested == 0
    assert poll(host, sales).ingested == 0
    assert len(_attachments(host)) == 1
    with host.app.app_context():
        m = host.inbox.models
        assert host.db.session.scalar(sa.select(sa.func.count()).select_from(m.Message)) == 1


def test_a_polled_nested_message_keeps_every_part(host, mail_server):
    mail_server.deliver("support@example.com", nested_mail())
    support = add_mailbox(host, mail_server, "support@example.com")
    assert poll(host, support).ingested == 1
    rows = _attachments(host)
    storage = host.app.extensions["shared_inbox"].storage
    with host.app.app_context():
        m = host.inbox.models
        data = {a.filename: storage.get(a.storage_key)
                for a in host.db.session.scalars(sa.select(m.Attachment))}
    assert data["photo.png"] == BIG and data["report.pdf"] == OTHER
    [eml] = [name for name in data if name.endswith(".eml")]
    assert parse_message(data[eml]).attachments[0].payload == OTHER
    assert sorted(r[1] for r in rows) == sorted(data)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from([b"--", b"b", b"\r", b"\n", b" ", b"\t", b"x", b"-", b"--b",
                                 b"--b--", b"\r\n"]), max_size=16), st.data())
def test_delimiter_search_finds_what_the_multiline_regex_finds(pieces, data):
    """The fast boundary search must cut parts exactly where the parser's rule does."""
    raw = b"".join(pieces)
    pos = data.draw(st.integers(0, len(raw)))
    end = data.draw(st.integers(pos, len(raw)))
    regex = re.compile(rb"^--b(--)?[ \t]*\r?$", re.M)
    expected = [(m.start(), m.end(), bool(m.group(1))) for m in regex.finditer(raw, pos, end)]
    assert list(delimiter_lines(raw, b"b", pos, end)) == expected
