"""The poller's batches: one transaction per FETCH batch, the slow path when a message
fails, and the memory-saving fast paths of the parser and the storage."""
import base64
import os
import random
from datetime import timedelta

import pytest
import sqlalchemy as sa
from email import policy as email_policy
from email.parser import BytesParser

from shared_inbox.mail import parse as parse_module
from shared_inbox.models import utcnow
from shared_inbox.storage import FilesystemStorage

from test_poll import add_mailbox, mail, poll, tickets


def _statements_and_commits(host):
    counts = {"sql": 0, "commits": 0}
    with host.app.app_context():
        engine = host.db.engine

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _count(*_a, **_k):
        counts["sql"] += 1

    @sa.event.listens_for(engine, "commit")
    def _commit(*_a, **_k):
        counts["commits"] += 1
    return counts


def test_a_batch_is_one_transaction(host, mail_server):
    for i in range(12):
        mail_server.deliver("support@example.com", mail(f"Batch {i}"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    counts = _statements_and_commits(host)
    result = poll(host, mailbox)
    assert (result.ingested, result.skipped, result.error) == (12, 0, None)
    # set-up commits (cursor, lease...) and one for the batch, not one per message
    assert counts["commits"] < 8, counts
    assert [t[0] for t in tickets(host)] == [f"Batch {i}" for i in range(12)]
    with host.app.app_context():
        m = host.inbox.models
        sync = host.db.session.scalar(sa.select(m.SyncState))
        uids = host.db.session.scalars(sa.select(m.FetchedUid.uid).order_by(m.FetchedUid.uid)).all()
        assert sync.last_uid == uids[-1] and len(uids) == 12


def test_a_crash_loses_only_the_uncommitted_batch_which_the_next_poll_fetches(
        host, mail_server, monkeypatch):
    """With the default batch size all 5 messages are one batch: a crash at message 3
    leaves nothing committed (no cursor moved, no ledger row), the next poll gets all 5."""
    import shared_inbox.services.ingest as ingest_module

    for i in range(5):
        mail_server.deliver("support@example.com", mail(f"Crash {i}"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    real_ledger, calls = ingest_module._ledger, []

    class Killed(BaseException):
        pass

    def dying_ledger(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Killed()
        return real_ledger(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "_ledger", dying_ledger)
    with pytest.raises(Killed):
        poll(host, mailbox)
    monkeypatch.setattr(ingest_module, "_ledger", real_ledger)
    assert tickets(host) == []
    with host.app.app_context():
        m = host.inbox.models
        assert host.db.session.scalar(sa.select(sa.func.count()).select_from(m.FetchedUid)) == 0
        host.db.session.execute(sa.update(m.SyncState).values(lease_until=utcnow() - timedelta(seconds=1)))
        host.db.session.commit()
    result = poll(host, mailbox)
    assert result.ingested == 5 and result.error is None
    assert [t[0] for t in tickets(host)] == [f"Crash {i}" for i in range(5)]
    assert poll(host, mailbox).ingested == 0


def test_a_failing_message_rolls_back_only_itself_and_is_stored_raw(host, mail_server, monkeypatch):
    import shared_inbox.services.ingest as ingest_module

    for i in range(5):
        mail_server.deliver("support@example.com", mail(f"Msg {i}"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    real = ingest_module._ingest_parsed

    def failing(mailbox, raw, parsed, *args, **kwargs):
        if parsed.subject == "Msg 2":
            raise RuntimeError("boom")
        return real(mailbox, raw, parsed, *args, **kwargs)

    monkeypatch.setattr(ingest_module, "_ingest_parsed", failing)
    result = poll(host, mailbox)
    assert (result.ingested, result.skipped, result.error) == (5, 0, None)
    assert len(result.uids) == 5 == len(set(result.uids))
    subjects = [t[0] for t in tickets(host)]
    assert subjects == ["Msg 0", "Msg 1", "(unreadable message)", "Msg 3", "Msg 4"]
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        flagged = session.scalar(sa.select(m.Ticket).where(m.Ticket.subject == "(unreadable message)"))
        assert flagged.is_flagged and "boom" in flagged.messages[0].parse_error
        raw = host.app.extensions["shared_inbox"].storage.get(flagged.messages[0].raw_key)
        assert b"Msg 2" in raw
        assert session.scalar(sa.select(sa.func.count()).select_from(m.FetchedUid)) == 5
        assert session.scalar(sa.select(sa.func.count()).select_from(m.Message)) == 5
    monkeypatch.setattr(ingest_module, "_ingest_parsed", real)
    assert poll(host, mailbox).ingested == 0


def test_the_same_mail_twice_in_one_batch_is_one_message(host, mail_server):
    raw = mail("Twice", msgid="twice-1")
    mail_server.deliver("support@example.com", raw)
    mail_server.deliver("support@example.com", raw)
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    result = poll(host, mailbox)
    assert (result.ingested, result.skipped) == (1, 1)
    assert tickets(host) == [("Twice", 1, "alice@example.org")]


@pytest.mark.parametrize("size", [0, 1, 2, 3, 57, 1000, 3 * 1024 * 1024 + 5])
def test_clean_base64_fast_path_decodes_like_the_lenient_one(size):
    data = random.Random(size).randbytes(size)
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    fast = parse_module._b64decode_clean(encoded)
    assert fast == data == parse_module._b64decode_lenient(encoded)[0]
    assert parse_module._b64decode_clean(encoded.decode("ascii")) == data


@pytest.mark.parametrize("encoded", [
    b"aGVsbG8", b"aGVsbG8=\r\nd29ybGQ=", b"aGVs*bG8=", b"aGVsbG8-_w==", b"aGVsbG8===",
    b"aGVsbG8=x", b"a", b"=", b"aGVsbA==" + b" " * 5,
])
def test_anything_unusual_goes_to_the_lenient_decoder(encoded):
    fast = parse_module._b64decode_clean(encoded)
    if fast is not None:
        assert fast == parse_module._b64decode_lenient(encoded)[0]
        assert parse_module._b64decode_lenient(encoded)[1:] == (True, False)
    else:  # repaired, garbled or URL-safe: left to the lenient decoder
        assert isinstance(parse_module._b64decode_lenient(encoded)[0], bytes)


def test_chunked_feeding_parses_like_bytes_parser():
    payload = random.Random(3).randbytes(300_000)
    raw = (b"From: A <a@example.org>\r\nSubject: chunks\r\nContent-Type: multipart/mixed; "
           b"boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=latin-1\r\n\r\n"
           b"caf\xe9\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: "
           b"base64\r\n\r\n" + base64.encodebytes(payload).replace(b"\n", b"\r\n")
           + b"--b--\r\n")
    for policy in (parse_module._PARSE_POLICY, email_policy.compat32):
        ours = parse_module._parse_bytes(raw, policy)
        theirs = BytesParser(policy=policy).parsebytes(raw)
        assert ours.as_bytes() == theirs.as_bytes()
    parsed = parse_module.parse_message(raw)
    assert parsed.attachments[0].payload == payload and not parsed.defects


def test_storage_recreates_a_directory_removed_behind_its_back(tmp_path):
    storage = FilesystemStorage(str(tmp_path / "files"))
    key = storage.put(b"one", kind="att")
    directory = os.path.dirname(storage._path(key))
    os.remove(storage._path(key))
    os.rmdir(directory)
    assert storage.put(b"one", kind="att") == key
    assert storage.get(key) == b"one"
    assert not [n for n in os.listdir(directory) if n != os.path.basename(key)]
