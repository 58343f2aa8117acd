"""Tests for shared_inbox.mail.parse: real-world corpus plus focused hostile cases.

The corpus of real e-mails lives outside the project (see /work/shared/corpus/MANIFEST.md)
and is used in place; the corpus tests skip when it is not there.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared_inbox.mail.parse import (
    MAX_TEXT_CHARS,
    Address,
    ParsedMessage,
    extract_message_ids,
    parse_message,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
STALWART = CORPUS / "stalwart-mail-parser"
RAW_FOLDERS = ("stalwart-mail-parser", "mikel-mail", "redmine", "talon")

HYPOTHESIS = settings(
    max_examples=120,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def corpus_params(pattern: str, folders=RAW_FOLDERS) -> list:
    files = []
    for folder in folders:
        base = CORPUS / folder
        if base.is_dir():
            files.extend(sorted(base.glob(pattern)))
    return [pytest.param(f, id=str(f.relative_to(CORPUS))) for f in files] or [
        pytest.param(None, id="corpus-missing")
    ]


def need(path: Path | None) -> Path:
    if path is None or not CORPUS.is_dir():
        pytest.skip("corpus not available at ../shared/corpus")
    return path


def corpus_file(relative: str) -> bytes:
    path = CORPUS / relative
    if not path.is_file():
        pytest.skip(f"corpus file {relative} not available")
    return path.read_bytes()


def mail(*header_lines: str, body: bytes | str = b"hello\r\n") -> bytes:
    """Build a raw message: header lines (str, may contain raw bytes via latin-1) + body."""
    head = "\r\n".join(header_lines).encode("latin-1")
    if isinstance(body, str):
        body = body.encode("latin-1")
    return head + b"\r\n\r\n" + body


_SAFE_NAME_FORBIDDEN = re.compile(r'[/\\\x00-\x1f\x7f<>:"|?*]')


def assert_well_formed(r: ParsedMessage) -> None:
    """Invariants every parse result must satisfy, however broken the input."""
    assert isinstance(r, ParsedMessage)
    strings = [r.subject, r.text, r.html or "", r.error or "", r.message_id or ""]
    strings += r.in_reply_to + r.references + r.defects
    strings += list(r.headers) + list(r.headers.values())
    for a in ([r.from_] if r.from_ else []) + r.reply_to + r.to + r.cc:
        assert isinstance(a, Address)
        strings += [a.name, a.email]
        assert a.email == a.email.lower()
        assert a.email == "" or "@" in a.email
    for s in strings:
        assert isinstance(s, str)
        s.encode("utf-8")  # no lone surrogates: storable as UTF-8 / in PostgreSQL
        assert "\x00" not in s
    for s in [r.subject, *r.headers.values()] + [a.name for a in r.to + r.cc + r.reply_to]:
        assert not re.search(r"[\x00-\x1f\x7f]", s), s
    if r.message_id is not None:
        assert r.message_id and "<" not in r.message_id and ">" not in r.message_id
    for mid in r.in_reply_to + r.references:
        assert mid and "<" not in mid and ">" not in mid
    if r.date is not None:
        assert r.date.utcoffset() == dt.timedelta(0)
    assert all(k == k.lower() for k in r.headers)
    for att in r.attachments:
        assert isinstance(att.payload, bytes)
        assert att.filename and len(att.filename) <= 200
        assert not _SAFE_NAME_FORBIDDEN.search(att.filename), att.filename
        assert att.filename not in (".", "..")
        assert re.fullmatch(
            r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*", att.content_type
        )
        assert att.content_id is None or (att.content_id and "<" not in att.content_id)
        assert not att.is_inline or att.content_id
    if r.is_malformed:
        assert r.error
    if r.html is not None:
        assert "<script" not in r.html.lower()


# =========================================================================== corpus: never raises


@pytest.mark.parametrize("path", corpus_params("**/*.eml"))
def test_corpus_message_parses(path):
    raw = need(path).read_bytes()
    for variant in (raw, raw.replace(b"\r\n", b"\n")):
        r = parse_message(variant)
        assert_well_formed(r)
        assert not r.is_malformed, (r.error, r.defects)


# =========================================================================== stalwart expected JSON


def _header(part: dict, name: str):
    for h in part["headers"]:
        if h["name"] == name:
            return h["value"]
    return None


def _expected_filename(part: dict) -> str | None:
    """MANIFEST: content_disposition filename, else content_type name."""
    for header, attribute in (("content_disposition", "filename"), ("content_type", "name")):
        value = _header(part, header)
        if isinstance(value, dict) and "ContentType" in value:
            for attr in value["ContentType"]["attributes"] or []:
                if attr["name"] == attribute:
                    return attr["value"]
    return None


def _same_text(expected: str, got: str) -> bool:
    """Exact match, except that U+FFFD in the expectation (bytes upstream could not decode:
    raw 8-bit ISO-8859-1 in headers) matches the one character we decode them to."""
    if "\ufffd" not in expected:
        return expected == got
    pattern = ".".join(re.escape(piece) for piece in expected.split("\ufffd"))
    return re.fullmatch(pattern, got) is not None


def _load_expected(path: Path) -> tuple[dict, ParsedMessage]:
    expected = json.loads(path.read_text(encoding="utf-8"))
    # The expectations were produced from the message with every CR removed (MANIFEST).
    raw = path.with_suffix(".eml").read_bytes().replace(b"\r", b"")
    return expected, parse_message(raw)


@pytest.mark.parametrize("path", corpus_params("*/*.json", folders=("stalwart-mail-parser",)))
def test_stalwart_expected_headers(path):
    expected, r = _load_expected(need(path))
    root = expected["parts"][0]

    subject = _header(root, "subject")
    subject = subject["Text"] if isinstance(subject, dict) and "Text" in subject else ""
    assert _same_text(re.sub(r"\s+", " ", subject).strip(), r.subject)

    message_id = _header(root, "message_id")
    assert r.message_id == (message_id["Text"] if isinstance(message_id, dict) else None)

    sender = _header(root, "from")
    if isinstance(sender, dict) and "Address" in sender:
        addresses = sender["Address"]
        first = (
            addresses["List"][0] if "List" in addresses else addresses["Group"][0]["addresses"][0]
        )
        assert r.from_ is not None
        assert _same_text(first["name"] or "", r.from_.name)
        address = (first["address"] or "").lower()
        # A local part without domain ("moderator") is not a usable address: we give "".
        assert r.from_.email == (address if "@" in address else "")
    else:
        assert r.from_ is None


# Attachment expectations that differ on purpose.  All but one are Dovecot's deliberately
# broken MIME structures (malformed/), where no answer is "right"; the reasons say which
# reading we take.
ATTACHMENT_XFAIL = {
    "malformed/001.json": (
        "boundary 'a' is a prefix of the outer 'ab': we end the inner multipart at '--ab' "
        "(no boundary of its own found, read as text); upstream adds an empty unterminated part"
    ),
    "malformed/002.json": (
        "multipart whose boundary never occurs: we read the body as text, upstream keeps "
        "the whole multipart as an attachment"
    ),
    "malformed/003.json": (
        "inner multipart reuses the outer boundary and the message is unterminated: we keep "
        "the last text part as body, upstream demotes it to an attachment"
    ),
    "malformed/004.json": (
        "boundary lines '--ab'/'--ac' only share a prefix with 'a': we read the unsplit body "
        "as text, upstream matches by prefix and demotes the unterminated part"
    ),
    "malformed/006.json": (
        "missing close boundaries: we keep the unterminated last text part as body text "
        "(common in real mail), upstream makes it an attachment"
    ),
    "malformed/007.json": (
        "header block without blank line before '--ab': we still find the text part; "
        "upstream adds an empty unterminated part as attachment"
    ),
    "malformed/008.json": (
        "missing close boundaries: we keep the unterminated text/html as body, upstream "
        "makes it an attachment"
    ),
    "malformed/009.json": (
        "unterminated inner multipart: we end it at the enclosing boundary (as Python's "
        "email parser does), upstream swallows the rest into one attachment"
    ),
    "malformed/011.json": (
        "same structure as malformed/009 (enclosing boundary ends the inner multipart)"
    ),
    "malformed/012.json": (
        "as malformed/009, with message/rfc822 parts: we see three, upstream two"
    ),
    "malformed/016.json": (
        "boundaries that are prefixes of each other: we end the inner parts at the "
        "enclosing boundary, upstream keeps four text parts and demotes the last"
    ),
    "thirdparty/015.json": (
        "three message/rfc822 attachments separated by the outer boundary: upstream lets "
        "the first swallow the other two; we return all three with their own filenames"
    ),
}


def _stalwart_attachment_params() -> list:
    params = []
    for p in corpus_params("*/*.json", folders=("stalwart-mail-parser",)):
        path = p.values[0]
        key = str(path.relative_to(STALWART)) if path else None
        if key in ATTACHMENT_XFAIL:
            params.append(
                pytest.param(
                    path,
                    id=p.id,
                    marks=pytest.mark.xfail(reason=ATTACHMENT_XFAIL[key], strict=True),
                )
            )
        else:
            params.append(p)
    return params


@pytest.mark.parametrize("path", _stalwart_attachment_params())
def test_stalwart_expected_attachments(path):
    expected, r = _load_expected(need(path))
    parts = expected["parts"]
    indexes = set(expected["attachments"])
    # Inline media listed in the body lists are attachments for us too.
    for i in expected["text_body"] + expected["html_body"]:
        body = parts[i]["body"]
        if isinstance(body, dict) and ("Binary" in body or "InlineBinary" in body):
            indexes.add(i)
    names = [_expected_filename(parts[i]) for i in sorted(indexes)]
    assert len(r.attachments) == len(names), ([a.filename for a in r.attachments], names)
    expected_names = sorted(re.split(r"[/\\]", n)[-1] for n in names if n)  # we drop paths
    got_names = sorted(a.filename for a, n in zip(r.attachments, names) if n)
    assert len(expected_names) == len(got_names)
    for want, got in zip(expected_names, got_names):
        assert _same_text(want, got), (want, got)


def test_xfail_list_is_current():
    if not STALWART.is_dir():
        pytest.skip("corpus not available")
    for key in ATTACHMENT_XFAIL:
        assert (STALWART / key).is_file(), key


# =========================================================================== corpus: derived checks
# Expected values below were read off the e-mails themselves.


def test_corpus_raw_latin1_header_and_uuencoded_attachment():
    r = parse_message(corpus_file("stalwart-mail-parser/legacy/026.eml"))
    assert r.subject == "Die Hasen und die Frösche"  # raw 8-bit ISO-8859-1 in the header
    names = [a.filename for a in r.attachments]
    assert names == ["HasenundFrösche.txt", "farmerandstork.txt"]
    assert r.attachments[0].payload.startswith(b"Die Hasen und die Fr\xf6sche")  # x-uuencode


def test_corpus_inline_images_in_related_html():
    r = parse_message(corpus_file("stalwart-mail-parser/legacy/024.eml"))
    assert (
        r.html is not None
        and 'src="cid:4.2.0.58.20000519003735.00a8d7e0@pop.example.com.2"' in r.html
    )
    assert [(a.filename, a.is_inline) for a in r.attachments] == [
        ("2aa48eb6.png", True),
        ("2aa48ec0.png", True),
    ]
    assert r.text.startswith("Die Hasen und die Frösche\n\nDie Hasen klagten einst")


def test_corpus_digest_parts_keep_their_headers():
    r = parse_message(corpus_file("stalwart-mail-parser/rfc/004.eml"))  # multipart/digest
    assert [(a.filename, a.content_type) for a in r.attachments] == [
        ("my opinion.eml", "message/rfc822"),
        ("my different opinion.eml", "message/rfc822"),
    ]
    assert r.attachments[0].payload.startswith(b"From: someone-else\n")


def test_corpus_rfc8621_body_selection():
    r = parse_message(corpus_file("stalwart-mail-parser/rfc/007.eml"))
    assert r.text.split("\n") == ["A", "B", "D", "K"]  # the RFC's textBody (image C skipped)
    assert [a.content_type for a in r.attachments] == [
        "image/jpeg",
        "image/jpeg",
        "image/jpeg",
        "application/x-excel",
        "message/rfc822",
    ]
    assert r.attachments[-1].filename == "J.eml"


@pytest.mark.parametrize(
    "relative, subject, sender",
    [
        ("redmine/mail_handler/subject_japanese_3.eml", "① 丸数字テスト", "jsmith@somenet.foo"),
        ("redmine/mail_handler/subject_japanese_1.eml", "テスト", "jsmith@somenet.foo"),
        ("redmine/mail_handler/gmail-iso8859-2.eml", "Nikad više", "jsmith@somenet.foo"),
        ("mikel-mail/multi_charset/japanese_iso_2022.eml", "まみむめも", "raasdnil@gmail.com"),
        ("mikel-mail/rfc6532/utf8_headers.eml", "Säying Hello", "jdöe@mächine.example"),
        ("mikel-mail/error_emails/bad_encoded_subject.eml", "TEST", None),
        (
            "mikel-mail/plain_emails/raw_email_with_partially_quoted_subject.eml",
            'Re: Test: "漢字" mid "漢字" tail',
            "jamis@37signals.com",
        ),
        (
            "mikel-mail/plain_emails/raw_email_incorrect_header.eml",
            "Stop adware/spyware once and for all.",
            "xxx@xxx.xxx",
        ),
        ("stalwart-mail-parser/malformed/019.eml", "Sprint 3 multipart fixture", None),
    ],
)
def test_corpus_subjects_and_senders(relative, subject, sender):
    r = parse_message(corpus_file(relative))
    assert r.subject == subject
    assert (r.from_.email if r.from_ else None) == sender


@pytest.mark.parametrize(
    "relative, text_start",
    [
        ("mikel-mail/multi_charset/japanese_iso_2022.eml", "すみません。"),
        ("mikel-mail/multi_charset/japanese_shift_jis.eml", "あいうえお"),
        ("mikel-mail/multi_charset/ks_c_5601-1987.eml", "스티해"),
        ("redmine/mail_handler/body_ks_c_5601-1987.eml", "고맙습니다."),
        ("redmine/mail_handler/gmail-iso8859-2.eml", "Na štriku se suši šosić."),
        ("redmine/mail_handler/invalid_utf8.eml", "Здравствуйте"),
        ("redmine/mail_handler/ticket_html_only.eml", "This is a html-only email."),
        ("redmine/mail_handler/outlook_2010_html_only.eml", "Simple, unadorned test email"),
        ("redmine/mail_handler/quoted_printable_utf8.eml", "Freundliche Grüsse"),
        # unquoted boundary with tspecials (boundary=----=_NextPart...), Outlook Express
        (
            "mikel-mail/mime_emails/raw_email_with_illegal_boundary.eml",
            "Hello\nThis is an outlook test",
        ),
        (
            "mikel-mail/error_emails/content_transfer_encoding_qp_with_space.eml",
            "If you're in need",
        ),
    ],
)
def test_corpus_bodies_decode(relative, text_start):
    r = parse_message(corpus_file(relative))
    assert r.text.startswith(text_start), r.text[:200]


def test_corpus_invalid_utf8_is_replaced_and_recorded():
    r = parse_message(corpus_file("redmine/mail_handler/invalid_utf8.eml"))
    assert "\ufffd" in r.text
    assert any("utf-8" in d.lower() for d in r.defects)


def test_corpus_attachment_names_in_legacy_charsets():
    ja = parse_message(corpus_file("redmine/mail_handler/gmail_with_attachment_ja.eml"))
    assert [a.filename for a in ja.attachments] == ["テスト.txt"]
    latin1 = parse_message(
        corpus_file("redmine/mail_handler/thunderbird_with_attachment_iso-8859-1.eml")
    )
    assert [a.filename for a in latin1.attachments] == ["ÄäÖöÜü" * 11 + ".png"]
    assert latin1.attachments[0].payload.startswith(b"\x89PNG")
    latin2 = parse_message(
        corpus_file("redmine/mail_handler/ticket_with_text_attachment_iso-8859-2.eml")
    )
    (att,) = latin2.attachments
    assert att.filename == "latin2.txt" and att.content_type == "text/plain"
    assert att.payload.decode("iso-8859-2") == "příliš žluoučký kůn"  # bytes kept as sent


def test_corpus_winmail_dat_and_missing_subject():
    r = parse_message(corpus_file("redmine/mail_handler/no_subject_header.eml"))
    assert r.subject == ""
    assert [(a.filename, a.content_type) for a in r.attachments] == [
        ("winmail.dat", "application/ms-tnef")
    ]


def test_corpus_missing_from():
    r = parse_message(corpus_file("redmine/mail_handler/ticket_without_from_header.eml"))
    assert r.from_ is None and not r.is_malformed


def test_corpus_split_encoded_words_in_display_name():
    r = parse_message(corpus_file("mikel-mail/error_emails/bad_subject.eml"))
    assert r.from_ == Address("MySurvey.com & Carol Adams", "carol@mysurvey.com")


def test_corpus_bounce_keeps_report_and_original():
    r = parse_message(corpus_file("mikel-mail/multipart_report_emails/multi_address_bounce1.eml"))
    assert r.text.startswith("This is the mail system at host")
    assert [(a.content_type, a.filename) for a in r.attachments] == [
        ("message/delivery-status", "delivery-status.txt"),
        ("message/rfc822", "Test of bounce email.eml"),
    ]
    assert b"Reporting-MTA" in r.attachments[0].payload
    assert (
        r.attachments[1].payload.lstrip().startswith(b"Return-Path:")
        or b"Subject: Test of bounce email" in r.attachments[1].payload
    )


@pytest.mark.parametrize("path", corpus_params("standard_replies/*.eml", folders=("talon",)))
def test_corpus_talon_replies_contain_reply(path):
    path = need(path)
    r = parse_message(path.read_bytes())
    reply_file = path.with_name(path.stem + "_reply_text")
    reply = reply_file.read_text(encoding="utf-8").strip() if reply_file.exists() else "Hello"
    assert reply in r.text


# =========================================================================== headers


def test_rfc2047_display_name():
    r = parse_message(
        mail(
            "From: =?iso-8859-1?q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
            'To: "Doe, John" <john@example.com>, =?utf-8?q?Smith=2C_Ann?= <ann@example.com>',
            "Cc: =?UTF-8?B?0JjQstCw0L0=?= <ivan@example.ru>, undisclosed-recipients:;",
            "Subject: =?utf-8?q?caf=C3=A9?=",
        )
    )
    assert r.from_ == Address("André Pirard", "pirard@vm1.ulg.ac.be")
    assert r.to == [
        Address("Doe, John", "john@example.com"),
        Address("Smith, Ann", "ann@example.com"),
    ]
    assert r.cc == [Address("Иван", "ivan@example.ru")]
    assert r.subject == "café"


@pytest.mark.parametrize(
    "raw_subject, expected",
    [
        # a multibyte character split across two encoded words
        ("=?utf-8?q?Gr=C3?= =?utf-8?q?=BC=C3=9Fe?=", "Grüße"),
        ("=?UTF-8?B?w6Q=?=\r\n =?UTF-8?B?w7Y=?=", "äö"),
        # different charsets next to each other
        ("=?iso-8859-1?q?caf=E9?= =?koi8-r?b?8NLJ18XU?=", "caféПривет"),
        # bad base64 padding, lower-case markers, RFC 2231 language suffix
        ("=?utf-8?b?SGVsbG8?= =?utf-8*en?Q?_world?=", "Hello world"),
        # unknown / bogus charsets fall back to UTF-8, then windows-1252
        ("=?x-unknown?q?na=C3=AFve?=", "naïve"),
        ("=?NONE?B?VEVTVA=?=", "TEST"),
        ("=?unknown-8bit?q?caf=E9?=", "café"),
        # encoded word glued to text, encoded word with raw spaces, unterminated word
        ("Re:=?utf-8?q?_Antw?=", "Re: Antw"),
        ("=?utf-8?q?two words?=", "two words"),
        ("=?utf-8?q?unterminated", "=?utf-8?q?unterminated"),
        ("plain\r\n\tfolded   subject\t", "plain folded subject"),
        ("Grüße aus Köln".encode("utf-8").decode("latin-1"), "Grüße aus Köln"),  # raw UTF-8
        ("Fr\xf6sche", "Frösche"),  # raw ISO-8859-1
    ],
)
def test_broken_and_unusual_subjects(raw_subject, expected):
    r = parse_message(mail("From: a@example.com", f"Subject: {raw_subject}"))
    assert r.subject == expected
    assert_well_formed(r)


@pytest.mark.parametrize(
    "from_header, name, email",
    [
        ('"broken <', "broken", ""),
        ("John Doe john@example.com", "John Doe", "john@example.com"),
        ("<JOHN@Example.COM>", "", "john@example.com"),
        ("john@example.com (John Doe)", "", "john@example.com"),
        ("Moderator-Address <moderator>", "Moderator-Address", ""),
        ('"=?utf-8?B?w4Rrw6Q=?=" <x@example.com>', "Äkä", "x@example.com"),
        ("=?utf-8?q?Bob?= <bob@example.com", "Bob", "bob@example.com"),
        ("<>", None, None),
        ("", None, None),
    ],
)
def test_garbage_from_headers(from_header, name, email):
    r = parse_message(mail(f"From: {from_header}", "Subject: x"))
    assert_well_formed(r)
    if name is None:
        assert r.from_ is None
    else:
        assert r.from_ == Address(name, email)


def test_missing_from_and_message_id():
    r = parse_message(mail("Subject: no sender", "To: help@example.com"))
    assert r.from_ is None
    assert r.message_id is None
    assert r.to == [Address("", "help@example.com")]
    assert not r.is_malformed and r.text == "hello"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("<a@b.example>", ["a@b.example"]),
        ("  <a@b>\r\n\t<c@d>", ["a@b", "c@d"]),
        ("<a@b>,<c@d>, <e@f>", ["a@b", "c@d", "e@f"]),
        ("a@b.example", ["a@b.example"]),
        ("a@b c@d", ["a@b", "c@d"]),
        ("<a@b", ["a@b"]),
        ("<a@b <c@d>", ["a@b", "c@d"]),
        ("<abc\r\n def@x.example>", ["abcdef@x.example"]),
        ("<a@b> (Your message of Mon, 1 Jan 2024)", ["a@b"]),
        ('Your message of "Mon, 1 Jan 2024" <a@b>', ["a@b"]),
        ("Your message of Monday", []),
        ("1234567890.ABCDEF", ["1234567890.ABCDEF"]),
        ("<a@b> <a@b> <c@d>", ["a@b", "c@d"]),
        ("<> <a@b>", ["a@b"]),
        ("<<<>>>", []),
        ("", []),
        (None, []),
    ],
)
def test_extract_message_ids(value, expected):
    assert extract_message_ids(value) == expected


def test_threading_headers():
    r = parse_message(
        mail(
            "From: a@example.com",
            "Message-ID:   <Unique.ID@Example.COM>  ",
            "In-Reply-To: <parent@example.com> (John's message)",
            "References: <root@example.com>\r\n <parent@example.com>",
            "References: <late@example.com>",
        )
    )
    assert r.message_id == "Unique.ID@Example.COM"
    assert r.in_reply_to == ["parent@example.com"]
    assert r.references == ["root@example.com", "parent@example.com", "late@example.com"]


def test_loop_protection_headers():
    r = parse_message(
        mail(
            "From: bot@example.com",
            "Auto-Submitted: auto-replied",
            "Precedence: bulk",
            "List-Id: Help list <help.example.com>",
            "List-Unsubscribe: <mailto:leave@example.com>,\r\n <https://example.com/u>",
            "X-Auto-Response-Suppress: All",
            "Return-Path: <>",
            "X-Autoreply: yes",
            "Thread-Topic: =?utf-8?q?Caf=C3=A9?=",
            "Delivered-To: help@example.com",
            "Delivered-To: team@example.com",
            "Content-Type: text/plain; charset=utf-8",
            "X-Other: not copied",
        )
    )
    assert r.headers == {
        "auto-submitted": "auto-replied",
        "precedence": "bulk",
        "list-id": "Help list <help.example.com>",
        "list-unsubscribe": "<mailto:leave@example.com>, <https://example.com/u>",
        "x-auto-response-suppress": "All",
        "return-path": "<>",
        "x-autoreply": "yes",
        "thread-topic": "Café",
        "delivered-to": "help@example.com, team@example.com",
        "content-type": "text/plain; charset=utf-8",
    }


@pytest.mark.parametrize(
    "value, expected",
    [
        (
            "Tue, 7 Apr 2026 10:00:01 +0200",
            dt.datetime(2026, 4, 7, 8, 0, 1, tzinfo=dt.timezone.utc),
        ),
        ("7 Apr 2026 10:00 -0000", dt.datetime(2026, 4, 7, 10, 0, tzinfo=dt.timezone.utc)),
        (
            "Wed, 17 May 2000 19:35:05 -0400 (EDT)",
            dt.datetime(2000, 5, 17, 23, 35, 5, tzinfo=dt.timezone.utc),
        ),
        ("2024-02-29T12:00:00Z", dt.datetime(2024, 2, 29, 12, 0, tzinfo=dt.timezone.utc)),
        ("Wed, 15 Dec 2010 59:10 -0500", None),
        ("<HR>", None),
        ("Mon, 1 Jan 99999 00:00:00 +9999", None),
    ],
)
def test_dates(value, expected):
    r = parse_message(mail("From: a@example.com", f"Date: {value}"))
    assert r.date == expected
    if expected is None:
        assert any("Date" in d for d in r.defects)


def test_nul_bytes_in_headers():
    raw = mail(
        "From: Jo\x00hn <john@exam\x00ple.com>",
        "Subject: Hel\x00lo\x00",
        "Message-ID: <a\x00b@example.com>",
        "X\x00Bad: header",
        "Precedence: bu\x00lk",
        body="body\x00text\r\n",
    )
    r = parse_message(raw)
    assert_well_formed(r)
    assert r.subject == "Hello"
    assert r.headers["precedence"] == "bulk"
    assert r.text == "bodytext"
    assert r.from_ is not None and r.from_.name == "John"


# =========================================================================== charsets


@pytest.mark.parametrize(
    "label, text, encoding, defect",
    [
        ("us-ascii", "café crème", "cp1252", True),  # mislabelled windows-1252
        ("us-ascii", "naïve", "utf-8", True),  # mislabelled UTF-8
        ("unknown-8bit", "Grüße", "utf-8", True),
        ("unknown-8bit", "Grüße", "cp1252", True),
        ("x-user-defined", "Ärger", "cp1252", True),
        ("utf-7", "Hi Mom -☺-!", "utf-7", False),
        ("iso-2022-jp", "こんにちは、世界", "iso2022_jp", False),
        ("gb2312", "中文邮件", "gb2312", False),
        ("gb2312", "朱镕基", "gbk", False),  # GBK-only character under a GB2312 label
        ("koi8-r", "Привет, мир", "koi8-r", False),
        ("iso-8859-1", "Preis: 5 €", "cp1252", False),  # ISO-8859-1 label means windows-1252
        ("utf-8", "Zoë", "latin-1", True),
        ("bogus-charset-name", "plain words", "ascii", True),
        ("windows-874", "สวัสดี", "cp874", False),
        ("unicode_escape", "plain", "ascii", True),  # a Python codec, not a mail charset
        ("", "déjà vu", "utf-8", False),
    ],
)
def test_charset_fallbacks(label, text, encoding, defect):
    raw = mail(
        "From: a@example.com",
        f'Content-Type: text/plain; charset="{label}"',
        "Content-Transfer-Encoding: 8bit",
        body=text.encode(encoding),
    )
    r = parse_message(raw)
    assert r.text == text
    assert bool([d for d in r.defects if "charset" in d or "not valid" in d]) == defect, r.defects
    assert_well_formed(r)


def test_html_meta_charset_used_when_mime_has_none():
    body = '<html><head><meta charset="windows-1251"></head><body><p>Привет</p></body></html>'
    r = parse_message(
        mail("From: a@example.com", "Content-Type: text/html", body=body.encode("cp1251"))
    )
    assert r.text == "Привет" and "Привет" in r.html


# =========================================================================== structure


def test_html_only_mail_gets_text():
    html = (
        "<html><head><style>p{color:red}</style><title>t</title></head><body>"
        "<p>Dear support,</p><p>my <b>printer</b> is on fire.<br>Please help!</p>"
        '<script>alert("x")</script><img src="https://tracker.example/p.gif"></body></html>'
    )
    r = parse_message(
        mail("From: a@example.com", "Content-Type: text/html; charset=utf-8", body=html)
    )
    assert r.text == "Dear support,\n\nmy printer is on fire.\nPlease help!"
    assert "printer" in r.html and "<script" not in r.html and "alert" not in r.html
    assert 'data-remote-src="https://tracker.example/p.gif"' in r.html
    assert "src=" not in r.html.replace("data-remote-src=", "")


def test_alternative_prefers_plain_text_and_keeps_html():
    body = (
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain version\r\n"
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        "<p>HTML <i>version</i></p>\r\n--b--\r\n"
    )
    r = parse_message(
        mail("From: a@example.com", 'Content-Type: multipart/alternative; boundary="b"', body=body)
    )
    assert r.text == "Plain version"
    assert r.html == "<p>HTML <i>version</i></p>"
    assert r.attachments == []


def test_empty_plain_alternative_falls_back_to_html_text():
    body = (
        "--b\r\nContent-Type: text/plain\r\n\r\n\r\n"
        "--b\r\nContent-Type: text/html\r\n\r\n<p>Only here</p>\r\n--b--\r\n"
    )
    r = parse_message(
        mail("From: a@example.com", 'Content-Type: multipart/alternative; boundary="b"', body=body)
    )
    assert r.text == "Only here"


def _pdf_part(name: str = "report.pdf", boundary: str = "b") -> str:
    data = base64.b64encode(b"%PDF-1.4 fake").decode()
    return (
        f'--{boundary}\r\nContent-Type: application/pdf; name="{name}"\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{data}\r\n"
    )


def test_attachment_only_mail():
    body = _pdf_part() + "--b--\r\n"
    r = parse_message(
        mail("From: a@example.com", 'Content-Type: multipart/mixed; boundary="b"', body=body)
    )
    assert not r.is_malformed and r.error is None
    assert r.text == "" and r.html is None
    assert [(a.filename, a.content_type, a.payload) for a in r.attachments] == [
        ("report.pdf", "application/pdf", b"%PDF-1.4 fake")
    ]

    single = parse_message(
        mail(
            "From: a@example.com",
            "Content-Type: image/png",
            "Content-Transfer-Encoding: base64",
            body=base64.b64encode(b"\x89PNG"),
        )
    )
    assert single.text == "" and not single.is_malformed
    assert [(a.filename, a.payload) for a in single.attachments] == [("image.png", b"\x89PNG")]


def test_message_rfc822_attachment_is_kept_whole():
    inner = (
        "From: Customer <c@example.com>\r\nSubject: =?utf-8?q?Original_question_=E2=9C=93?=\r\n"
        "Content-Type: text/plain\r\n\r\nINNER BODY must not become our text\r\n"
    )
    body = (
        "--b\r\nContent-Type: text/plain\r\n\r\nSee the forwarded mail.\r\n"
        f"--b\r\nContent-Type: message/rfc822\r\n\r\n{inner}--b--\r\n"
    )
    r = parse_message(
        mail("From: a@example.com", 'Content-Type: multipart/mixed; boundary="b"', body=body)
    )
    assert r.text == "See the forwarded mail."
    (att,) = r.attachments
    assert att.content_type == "message/rfc822"
    assert att.filename == "Original question ✓.eml"
    assert b"Subject: =?utf-8?q?Original_question_=E2=9C=93?=" in att.payload
    assert b"INNER BODY" in att.payload
    # A forwarded message (alone, as the only part) is an attachment too; its text is not ours.
    alone = parse_message(mail("From: a@example.com", "Content-Type: message/rfc822", body=inner))
    assert alone.text == "" and alone.attachments[0].filename == "Original question ✓.eml"
    slash = parse_message(
        mail(
            "From: a@example.com",
            "Content-Type: message/rfc822",
            body="Subject: Order 12/34 ../x\r\n\r\nbody",
        )
    )
    assert slash.attachments[0].filename == "Order 12_34 .._x.eml"


def test_winmail_dat_is_kept_as_attachment():
    tnef = b"\x78\x9f\x3e\x22\x01\x00" + bytes(range(256))
    body = (
        "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        '--b\r\nContent-Type: application/ms-tnef; name="winmail.dat"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="winmail.dat"\r\n\r\n'
        + base64.encodebytes(tnef).decode().replace("\n", "\r\n")
        + "--b--\r\n"
    )
    r = parse_message(
        mail("From: a@example.com", 'Content-Type: multipart/mixed; boundary="b"', body=body)
    )
    assert r.text == "see attached"
    assert [(a.filename, a.content_type, a.payload) for a in r.attachments] == [
        ("winmail.dat", "application/ms-tnef", tnef)
    ]


def test_inline_cid_images_and_plain_attachments():
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    body = (
        "--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        '<p>Logo: <img src="cid:logo@x.example" alt="logo"></p>\r\n'
        "--rel\r\nContent-Type: image/png\r\nContent-ID: <logo@x.example>\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{png}\r\n"
        '--rel\r\nContent-Type: image/png; name="unused.png"\r\nContent-ID: <unused@x.example>\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{png}\r\n--rel--\r\n"
    )
    r = parse_message(
        mail("From: a@example.com", 'Content-Type: multipart/related; boundary="rel"', body=body)
    )
    assert 'src="cid:logo@x.example"' in r.html  # left for the caller's cid_map
    assert r.text == "Logo:"
    assert [(a.filename, a.content_id, a.is_inline) for a in r.attachments] == [
        ("image.png", "logo@x.example", True),
        ("unused.png", "unused@x.example", False),
    ]


def test_apple_mail_text_split_around_inline_image():
    jpg = base64.b64encode(b"\xff\xd8\xff fake jpeg").decode()
    body = (
        "--m\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello, here is the photo:\r\n"
        "--m\r\nContent-Type: image/jpeg; name=photo.jpg\r\n"
        "Content-Disposition: inline; filename=photo.jpg\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{jpg}\r\n"
        "--m\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nand that was it.\r\n--m--\r\n"
    )
    r = parse_message(
        mail("From: a@example.com", 'Content-Type: multipart/mixed; boundary="m"', body=body)
    )
    assert r.text == "Hello, here is the photo:\r\nand that was it.".replace("\r", "")
    assert [(a.filename, a.content_type) for a in r.attachments] == [("photo.jpg", "image/jpeg")]


@pytest.mark.parametrize(
    "disposition, expected",
    [
        ('filename="../../etc/passwd"', "passwd"),
        ('filename="..\\\\..\\\\Windows\\\\System32\\\\evil.dll"', "evil.dll"),
        (
            "filename*=utf-8''a%00b%07c%0D%0Ad%1B.txt",
            "ab c d .txt",
        ),  # controls -> space, NUL dropped
        ('filename="=?utf-8?q?bad=00name=0A.txt?="', "badname .txt"),
        ("filename*=utf-8''%E2%80%AEgpj.exe", "gpj.exe"),  # right-to-left override removed
        ('filename="CON.txt"', "_CON.txt"),
        ('filename="..."', "attachment.pdf"),
        ('filename="/"', "attachment.pdf"),
        ('filename=""', "attachment.pdf"),
        ('filename="a<b>c:d|e?f*g.pdf"', "a_b_c_d_e_f_g.pdf"),
    ],
)
def test_unsafe_filenames_are_made_safe(disposition, expected):
    body = (
        "--b\r\nContent-Type: application/pdf\r\n"
        f"Content-Disposition: attachment; {disposition}\r\n\r\n%PDF\r\n--b--\r\n"
    )
    r = parse_message(
        mail("From: a@example.com", 'Content-Type: multipart/mixed; boundary="b"', body=body)
    )
    assert_well_formed(r)
    assert [a.filename for a in r.attachments] == [expected]


def test_long_filename_is_shortened_keeping_extension():
    name = "x" * 300 + ".docx"
    body = (
        "--b\r\nContent-Type: application/octet-stream\r\n"
        f'Content-Disposition: attachment; filename="{name}"\r\n\r\ndata\r\n--b--\r\n'
    )
    r = parse_message(
        mail("From: a@example.com", 'Content-Type: multipart/mixed; boundary="b"', body=body)
    )
    (att,) = r.attachments
    assert len(att.filename) == 200 and att.filename.endswith(".docx")
    assert unicodedata.is_normalized("NFC", att.filename)


def _nested_multipart(depth: int) -> bytes:
    body = "".join(
        f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n'
        for i in range(depth)
    )
    body += f"--b{depth}\r\nContent-Type: text/plain\r\n\r\ndeep inside\r\n--b{depth}--\r\n"
    body += "".join(f"--b{i}--\r\n" for i in range(depth - 1, -1, -1))
    return mail(
        "From: a@example.com",
        "Subject: nested",
        'Content-Type: multipart/mixed; boundary="b0"',
        body=body,
    )


def test_200_level_nested_multipart_does_not_blow_up():
    start = time.perf_counter()
    r = parse_message(_nested_multipart(200))
    assert time.perf_counter() - start < 5
    assert_well_formed(r)
    assert not r.is_malformed and r.subject == "nested"
    assert any("nesting deeper than 50" in d for d in r.defects)
    assert r.text == ""  # the body sits beyond the depth limit and is ignored

    shallow = parse_message(_nested_multipart(20))
    assert shallow.text == "deep inside" and not shallow.defects


def test_absurdly_deep_nesting_is_flagged_not_raised():
    r = parse_message(_nested_multipart(3000))
    assert_well_formed(r)
    assert r.is_malformed and "nested too deeply" in r.error
    assert r.subject == "nested" and r.from_ == Address("", "a@example.com")  # headers survive


def test_truncated_base64():
    pdf = bytes(range(256)) * 4
    encoded = base64.b64encode(pdf).decode()
    text = base64.b64encode("Truncated text body that still reads fine".encode()).decode()
    body = (
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{text[:-5]}\r\n"
        "--b\r\nContent-Type: application/pdf; name=cut.pdf\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{encoded[:-7]}\r\n--b--\r\n"
    )
    r = parse_message(
        mail("From: a@example.com", 'Content-Type: multipart/mixed; boundary="b"', body=body)
    )
    assert r.text.startswith("Truncated text body that still reads")
    (att,) = r.attachments
    assert pdf.startswith(att.payload) and len(att.payload) >= len(pdf) - 6
    assert any("base64" in d for d in r.defects)


def test_garbage_base64_text_part_becomes_attachment():
    body = (
        "--b\r\nContent-Type: text/plain\r\n\r\nreal text\r\n"
        "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "?!garbage*\r\n--b--\r\n"
    )
    r = parse_message(
        mail("From: a@example.com", 'Content-Type: multipart/mixed; boundary="b"', body=body)
    )
    assert r.text == "real text"
    assert [a.content_type for a in r.attachments] == ["text/plain"]


@pytest.mark.parametrize("cte", ["quoted printable", "Quoted-Printable;", "QUOTED-PRINTABLE "])
def test_odd_transfer_encoding_labels(cte):
    r = parse_message(
        mail(
            "From: a@example.com",
            "Content-Type: text/plain; charset=iso-8859-1",
            f"Content-Transfer-Encoding: {cte}",
            body="caf=E9 =\r\nsoft break",
        )
    )
    assert r.text == "café soft break"


def test_format_flowed_is_unwrapped():
    body = "This is a long \r\nflowed line.\r\n> quoted \r\n> more\r\n-- \r\nsig"
    r = parse_message(
        mail("From: a@example.com", "Content-Type: text/plain; format=flowed", body=body)
    )
    assert r.text == "This is a long flowed line.\n> quoted more\n-- \nsig"
    delsp = parse_message(
        mail(
            "From: a@example.com",
            "Content-Type: text/plain; format=flowed; delsp=yes",
            body="Zusammen \r\ngeschrieben",
        )
    )
    assert delsp.text == "Zusammengeschrieben"


def test_huge_text_is_capped():
    r = parse_message(
        mail("From: a@example.com", "Content-Type: text/plain", body=b"x" * (MAX_TEXT_CHARS + 1000))
    )
    assert len(r.text) == MAX_TEXT_CHARS
    assert any("truncated" in d for d in r.defects)


@pytest.mark.parametrize(
    "raw", [b"", b"   \r\n", b"\x00\x01\x02\xff", b"no headers at all, just words"]
)
def test_nothing_usable_is_flagged(raw):
    r = parse_message(raw)
    assert_well_formed(r)
    assert r.is_malformed and r.error


def test_input_types_and_leading_blank_lines():
    assert parse_message(bytearray(b"Subject: a\r\n\r\nb")).subject == "a"
    assert parse_message("Subject: ä\n\nb").subject == "ä"  # str input tolerated
    r = parse_message(b"\r\n\r\nSubject: late\r\nFrom: a@example.com\r\n\r\nbody")
    assert r.subject == "late" and r.text == "body"


# =========================================================================== fuzzing


@HYPOTHESIS
@given(st.binary(max_size=2000))
def test_property_random_bytes_never_raise(raw):
    assert_well_formed(parse_message(raw))


_SEED = (
    b'From: =?utf-8?q?J=C3=B6rg?= <j@example.com>\r\nTo: a@b.c, "x, y" <x@y.z>\r\n'
    b"Subject: =?iso-8859-1?b?SGFsbG8=?= test\r\nMessage-ID: <m1@example.com>\r\n"
    b"Date: Tue, 7 Apr 2026 10:00:01 +0200\r\nReferences: <r1@x> <r2@x>\r\n"
    b'Content-Type: multipart/mixed; boundary="zz"\r\n\r\n'
    b'--zz\r\nContent-Type: multipart/alternative; boundary="aa"\r\n\r\n'
    b"--aa\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nHall=C3=B6 \r\nWelt\r\n"
    b"--aa\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<p>Hall\xc3\xb6 <img src="cid:i1"></p>\r\n'
    b"--aa--\r\n--zz\r\nContent-Type: image/png\r\nContent-ID: <i1>\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
    b"--zz\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n"
    b"--zz\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''%C3%A4.bin\r\n\r\nxyz\r\n--zz--\r\n"
)


@HYPOTHESIS
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_SEED)),
            st.integers(0, 40),
            st.binary(max_size=12)
            | st.sampled_from(
                [
                    b"\r\n",
                    b"--zz",
                    b"--aa--",
                    b"=?",
                    b"?=",
                    b"<",
                    b">",
                    b";",
                    b'"',
                    b"\x00",
                    b"\xff",
                    b"\r\n\r\n",
                    b"Content-Type: multipart/mixed; boundary=zz\r\n",
                ]
            ),
        ),
        max_size=8,
    )
)
def test_property_mutated_message_never_raises(edits):
    raw = bytearray(_SEED)
    for position, length, replacement in edits:
        raw[position : position + length] = replacement
    assert_well_formed(parse_message(bytes(raw)))


# ----------------------------------------------------------------------------- address fast paths

def _address_headers_of_corpus() -> list[str]:
    from email import policy as email_policy
    from email.parser import BytesHeaderParser

    values = []
    if not CORPUS.is_dir():
        return values
    for path in sorted(CORPUS.rglob("*")):
        if not path.is_file() or path.suffix in (".json", ".md", ".txt", ".yaml", ".yml"):
            continue
        try:
            msg = BytesHeaderParser(policy=email_policy.compat32).parsebytes(path.read_bytes())
        except Exception:  # noqa: BLE001 - not a mail
            continue
        for name in ("From", "To", "Cc", "Reply-To", "Sender"):
            values += [str(v) for v in (msg.get_all(name) or [])]
    return values


_ENCODED_NAMES = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                         max_size=30)


@HYPOTHESIS
@given(name=_ENCODED_NAMES, local=st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,15}", fullmatch=True),
       charset=st.sampled_from(["utf-8", "iso-8859-1", "koi8-r", "shift_jis"]))
def test_encoded_sender_fast_path_agrees_with_the_header_parser(name, local, charset):
    """The poller reads ``=?utf-8?b?...?= <a@b>`` without the (slow) header registry; it
    must give exactly the name and address the registry path gives (base64 and quoted-
    printable words, several words for a long name)."""
    from email.header import Header
    from shared_inbox.mail import parse as parse_module

    try:
        encoded = Header(name, charset).encode()
    except (UnicodeEncodeError, LookupError):
        return
    text = f"{encoded} <{local}@mail.example.com>"
    fast = parse_module._encoded_address(text)
    slow = _slow_address(text)
    if fast is not None:
        assert fast == slow


def _slow_address(text: str):
    from shared_inbox.mail import parse as parse_module

    saved = parse_module._encoded_address, parse_module._simple_address
    parse_module._encoded_address = parse_module._simple_address = lambda _t: None
    try:
        return parse_module._parse_address_header_uncapped("From", text, parse_module._Defects())
    finally:
        parse_module._encoded_address, parse_module._simple_address = saved


def test_address_fast_paths_agree_with_the_header_parser_on_the_corpus():
    from shared_inbox.mail import parse as parse_module

    values = _address_headers_of_corpus()
    if not values:
        pytest.skip("corpus not present")
    taken = 0
    for value in values:
        text = parse_module._unfold(value[:parse_module.MAX_HEADER_CHARS])
        fast = (parse_module._simple_address(text) if "=?" not in text
                else parse_module._encoded_address(text))
        if fast is None:
            continue
        taken += 1
        assert fast == _slow_address(value), value
    assert taken > 50  # the shapes are common in real mail, not a corner case
