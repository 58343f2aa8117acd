"""The whole real-world corpus through ingestion: every email becomes exactly one message.

The corpus lives outside the project (see /work/shared/corpus/MANIFEST.md) and is read in
place; the test skips when it is absent.  Which files are emails: every ``*.eml`` under the
four folders that hold raw RFC 5322 messages (stalwart-mail-parser, mikel-mail, redmine,
talon) -- 243 files, the MANIFEST's "243 raw RFC 5322 messages".  Everything else there is
an expectation (stalwart ``.json``, talon ``*_reply_text``), a bare body or HTML fragment
(talon ``html_replies/``, ``signature/``), or a ``COPYING`` notice.

One test function loops over all files and collects failures, so a PostgreSQL run stays
one schema set-up and the report lists every problem at once.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_parse import ATTACHMENT_XFAIL, _expected_filename, _header, _same_text

from shared_inbox.services.ingest import ingest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
RAW_FOLDERS = ("stalwart-mail-parser", "mikel-mail", "redmine", "talon")
EXPECTED_EMAILS = 243

# Files that ingest() must recognise as the same mail as an earlier file, mapped to that
# earlier file: same Message-ID and same content fingerprint (ingest.fingerprint() covers
# Message-ID, sender address, subject, date, text, HTML and attachment bytes), or, for mail
# without a Message-ID, the same fingerprint alone.  ingest() returns None for them and
# points their ledger row at the earlier message.  Files are ingested in the order of
# corpus_emails().  Checked by hand:
DUPLICATES = {
    # Dovecot's broken structures without any header but Content-Type: no Message-ID, no
    # sender, subject or date, and the same decoded text ("body") as an earlier file
    "stalwart-mail-parser/malformed/003.eml": "stalwart-mail-parser/malformed/002.eml",
    "stalwart-mail-parser/malformed/006.eml": "stalwart-mail-parser/malformed/002.eml",
    "stalwart-mail-parser/malformed/007.eml": "stalwart-mail-parser/malformed/005.eml",
    # byte-identical copies upstream
    "mikel-mail/mime_emails/raw_email12.eml":
        "mikel-mail/attachment_emails/attachment_content_location.eml",
    "mikel-mail/plain_emails/raw_email8.eml":
        "mikel-mail/attachment_emails/attachment_with_encoded_name.eml",
    "mikel-mail/multipart_report_emails/multi_address_bounce2.eml":
        "mikel-mail/multipart_report_emails/multi_address_bounce1.eml",
    "stalwart-mail-parser/malformed/011.eml": "stalwart-mail-parser/malformed/009.eml",
    # the same message with LF instead of CRLF line endings
    "mikel-mail/attachment_emails/attachment_pdf_lf.eml":
        "mikel-mail/attachment_emails/attachment_pdf.eml",
    "mikel-mail/attachment_emails/attachment_pdf_non_ascii_lf.eml":
        "mikel-mail/attachment_emails/attachment_pdf_non_ascii.eml",
    "mikel-mail/plain_emails/basic_email_lf.eml": "mikel-mail/plain_emails/basic_email.eml",
    # same Message-ID and content, only the attachment's *name* differs (ciële.txt vs
    # "This is a test.txt"); the fingerprint does not cover file names
    "mikel-mail/attachment_emails/attachment_with_unquoted_name.eml":
        "mikel-mail/attachment_emails/attachment_nonascii_filename.eml",
    # same Message-ID and content; only headers outside the fingerprint differ
    "mikel-mail/error_emails/multiple_invalid_content_dispositions.eml":
        "mikel-mail/error_emails/multiple_content_types.eml",  # MIME labelling
    "mikel-mail/error_emails/multiple_references_with_one_invalid.eml":
        "mikel-mail/error_emails/multiple_content_types.eml",  # References
    "mikel-mail/mime_emails/raw_email_with_quoted_illegal_boundary.eml":
        "mikel-mail/mime_emails/raw_email_with_illegal_boundary.eml",  # quoted boundary
    "mikel-mail/plain_emails/raw_email_with_at_display_name.eml":
        "mikel-mail/plain_emails/basic_email.eml",  # extra From/To addresses
    "mikel-mail/plain_emails/raw_email5.eml":
        "mikel-mail/plain_emails/raw_email10.eml",  # charset label
    "mikel-mail/plain_emails/raw_email6.eml": "mikel-mail/plain_emails/raw_email10.eml",
}

# Ingestion bugs found with this corpus (file -> reason).  Empty: none known.
INGEST_XFAIL: dict[str, str] = {}


def corpus_emails() -> list[Path]:
    files: list[Path] = []
    for folder in RAW_FOLDERS:
        base = CORPUS / folder
        if base.is_dir():
            files.extend(sorted(base.rglob("*.eml")))
    return files


def _stalwart_expectations(path: Path) -> dict | None:
    import json

    expected_path = path.with_suffix(".json")
    if "stalwart-mail-parser" not in path.parts or not expected_path.is_file():
        return None
    return json.loads(expected_path.read_text(encoding="utf-8"))


def _check_stalwart(key: str, expected: dict, msg, attachments) -> list[str]:
    """The comparison rules of tests/test_parse.py (subject, sender, attachment names),
    applied to what ingest() stored."""
    problems: list[str] = []
    root = expected["parts"][0]
    subject = _header(root, "subject")
    subject = subject["Text"] if isinstance(subject, dict) and "Text" in subject else ""
    if not _same_text(re.sub(r"\s+", " ", subject).strip()[:998], msg.subject):
        problems.append(f"subject {msg.subject!r} != expected {subject!r}")
    sender = _header(root, "from")
    if isinstance(sender, dict) and "Address" in sender:
        addresses = sender["Address"]
        first = (addresses["List"][0] if "List" in addresses
                 else addresses["Group"][0]["addresses"][0])
        address = (first["address"] or "").lower()
        want = address if "@" in address else ""
    else:
        want = ""
    if msg.from_email != want:
        problems.append(f"from_email {msg.from_email!r} != expected {want!r}")

    parts = expected["parts"]
    indexes = set(expected["attachments"])
    for i in expected["text_body"] + expected["html_body"]:
        body = parts[i]["body"]
        if isinstance(body, dict) and ("Binary" in body or "InlineBinary" in body):
            indexes.add(i)
    names = [_expected_filename(parts[i]) for i in sorted(indexes)]
    got = [a.filename for a in attachments]
    same = len(got) == len(names)
    if same:
        expected_names = sorted(re.split(r"[/\\]", n)[-1][:255] for n in names if n)
        got_names = sorted(g for g, n in zip(got, names) if n)
        same = len(expected_names) == len(got_names) and all(
            _same_text(w, g) for w, g in zip(expected_names, got_names))
    stalwart_key = key.split("/", 1)[1].replace(".eml", ".json")
    if stalwart_key in ATTACHMENT_XFAIL:
        if same:  # strict, like the xfail in test_parse.py
            problems.append(f"XPASS: attachments now match upstream; drop {stalwart_key} from "
                            "test_parse.ATTACHMENT_XFAIL")
    elif not same:
        problems.append(f"attachments {got} != expected {names}")
    return problems


def test_whole_corpus_ingests(host, caplog):
    files = corpus_emails()
    if not files:
        pytest.skip("corpus not available at ../shared/corpus")
    assert len(files) == EXPECTED_EMAILS, [str(f.relative_to(CORPUS)) for f in files]
    caplog.set_level(logging.ERROR, logger="shared_inbox.ingest")

    storage = host.app.extensions["shared_inbox"].storage
    failures: list[str] = []
    xfailed: list[str] = []
    row_of: dict[str, int] = {}
    raw_of: dict[str, bytes] = {}
    compared: list[str] = []  # stalwart files whose stored message was checked

    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        mailbox = m.Mailbox(name="Support", email_address="support@example.com")
        session.add(mailbox)
        session.commit()

        def count(model) -> int:
            return session.scalar(sa.select(sa.func.count()).select_from(model))

        # ---------------------------------------------------------------- first pass
        for uid, path in enumerate(files, start=1):
            key = str(path.relative_to(CORPUS))
            raw = path.read_bytes()
            raw_of[key] = raw
            before = count(m.Message)
            caplog.clear()
            try:
                msg = ingest(mailbox, raw, folder="INBOX", uidvalidity=1, uid=uid)
            except Exception as exc:  # noqa: BLE001 - collected, reported below
                session.rollback()
                problem = f"{key}: ingest raised {type(exc).__name__}: {exc}"
                (xfailed if key in INGEST_XFAIL else failures).append(problem)
                continue
            problems: list[str] = []
            added = count(m.Message) - before
            if key in DUPLICATES:
                original = DUPLICATES[key]
                pointed = session.scalar(sa.select(m.FetchedUid.message_pk).where(
                    m.FetchedUid.mailbox_id == mailbox.id, m.FetchedUid.uid == uid))
                if msg is not None or added != 0 or pointed is None \
                        or pointed != row_of.get(original):
                    problems.append(
                        f"expected to be recognised as a duplicate of {original} (row "
                        f"{row_of.get(original)}): returned {msg and msg.id}, {added} rows "
                        f"added, ledger -> {pointed}")
                else:
                    row_of[key] = pointed
            elif msg is None:
                problems.append("ingest returned None on first sight (taken for a duplicate?)")
            else:
                if added != 1 or msg.id in row_of.values():
                    problems.append(f"{added} message rows added (expected 1), row {msg.id}"
                                    + (" reused from an earlier file"
                                       if msg.id in row_of.values() else ""))
                row_of[key] = msg.id
                if msg.thread_reason == "could not be parsed" or caplog.records:
                    logged = "\n".join(r.getMessage() + ("\n" + r.exc_text if r.exc_text else "")
                                       for r in caplog.records)
                    problems.append(f"stored as unreadable: {msg.parse_error}\n{logged}")
                if msg.is_malformed:
                    problems.append(f"flagged malformed: {msg.parse_error}")
                stored = storage.get(msg.raw_key) if msg.raw_key else None
                if stored != raw:
                    problems.append("stored raw bytes differ from the input")
                expected = _stalwart_expectations(path)
                if expected is not None:
                    attachments = session.scalars(
                        sa.select(m.Attachment).where(m.Attachment.message_id == msg.id)
                        .order_by(m.Attachment.id)).all()
                    problems += _check_stalwart(key, expected, msg, attachments)
                    compared.append(key)
            for problem in problems:
                (xfailed if key in INGEST_XFAIL else failures).append(f"{key}: {problem}")

        messages = count(m.Message)
        ledger = count(m.FetchedUid)
        distinct = len(files) - len(DUPLICATES)

        # ---------------------------------------------------------------- second pass
        for uid, path in enumerate(files, start=1):
            key = str(path.relative_to(CORPUS))
            try:
                again = ingest(mailbox, raw_of[key], folder="INBOX", uidvalidity=1, uid=uid)
            except Exception as exc:  # noqa: BLE001
                session.rollback()
                failures.append(f"{key}: re-ingest raised {type(exc).__name__}: {exc}")
                continue
            if again is not None:
                failures.append(f"{key}: re-ingesting uid {uid} returned row {again.id}")
        if count(m.Message) != messages or count(m.FetchedUid) != ledger:
            failures.append("re-ingesting the same UIDs added rows")

        # Every file has its ledger row pointing at the message it became.
        ledger_rows = dict(session.execute(
            sa.select(m.FetchedUid.uid, m.FetchedUid.message_pk)
            .where(m.FetchedUid.mailbox_id == mailbox.id)).all())
        for uid, path in enumerate(files, start=1):
            key = str(path.relative_to(CORPUS))
            if key in row_of and ledger_rows.get(uid) != row_of[key]:
                failures.append(f"{key}: ledger uid {uid} -> {ledger_rows.get(uid)}, "
                                f"expected {row_of[key]}")
        if sum(t for t in session.scalars(sa.select(m.Ticket.message_count))) != messages:
            failures.append("ticket message counts do not add up to the messages stored")

    assert set(DUPLICATES) <= set(row_of) or failures, "duplicate list names unknown files"
    assert not failures, f"{len(failures)} problem(s):\n" + "\n".join(failures)
    assert messages == distinct, (messages, distinct)
    # 87 stalwart emails with expectations, minus the 4 that are duplicates of earlier ones.
    stalwart = [f for f in files if "stalwart-mail-parser" in f.parts]
    assert len(compared) == len(stalwart) - sum("stalwart" in k for k in DUPLICATES) == 83
    assert ledger == len(files)
    if INGEST_XFAIL:
        missing = set(INGEST_XFAIL) - {x.split(":", 1)[0] for x in xfailed}
        assert not missing, f"INGEST_XFAIL entries that now pass: {sorted(missing)}"
        pytest.xfail("known ingestion bugs: " + "; ".join(xfailed))
