"""The poller's batches: one transaction per FETCH batch, the slow path when a message
fails, and the memory-saving fast paths of the parser and the storage."""
import base64
import os
import random
import re
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
    # set-up commits (cursor, lease...), one for the batch and one for parsing its bodies,
    # not one per message
    assert counts["commits"] < 9, counts
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
    from shared_inbox.services.accept import BatchAcceptor

    for i in range(5):
        mail_server.deliver("support@example.com", mail(f"Crash {i}"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    real_accept, calls = BatchAcceptor.read_header_block, []

    class Killed(BaseException):
        pass

    def dying_accept(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Killed()
        return real_accept(*args, **kwargs)

    monkeypatch.setattr(BatchAcceptor, "read_header_block", staticmethod(dying_accept))
    with pytest.raises(Killed):
        poll(host, mailbox)
    monkeypatch.setattr(BatchAcceptor, "read_header_block", staticmethod(real_accept))
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

    from shared_inbox.services.accept import BatchAcceptor

    real_accept = BatchAcceptor.read_header_block

    def failing_accept(raw):
        if b"Subject: Msg 2" in raw:
            raise RuntimeError("boom")
        return real_accept(raw)

    monkeypatch.setattr(BatchAcceptor, "read_header_block", staticmethod(failing_accept))  # the batch's hot path
    monkeypatch.setattr(ingest_module, "_ingest_parsed", failing)  # one at a time
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


# ----------------------------------------------------------------------------- deferred fsync

def _stored_names(root) -> list[str]:
    """Every file under a storage root (content addresses, and any leftovers)."""
    return sorted(name for _dir, _dirs, files in os.walk(root) for name in files)


def _is_content_address(name: str) -> bool:
    stem = name.split(".", 1)[0]
    return len(stem) == 64 and all(c in "0123456789abcdef" for c in stem)


def test_deferred_storage_writes_are_readable_at_once_and_named_only_when_synced(tmp_path):
    storage = FilesystemStorage(str(tmp_path / "files"))
    with storage.deferred_sync():
        key = storage.put(b"first", kind="att")
        assert storage.put(b"first", kind="att") == key  # the same bytes: one file
        streamed, size, _sha = storage.put_stream(iter([b"str", b"eamed"]), kind="att")
        assert size == 8
        # Not under its content address before the sync (a crash cannot leave a short
        # file there), but readable by the code that wrote it.
        assert not os.path.exists(storage._path(key))
        assert storage.get(key) == b"first" and storage.get(streamed) == b"streamed"
        storage.sync()
        assert os.path.exists(storage._path(key)) and os.path.exists(storage._path(streamed))
        late = storage.put(b"late", kind="raw", suffix=".eml")
    assert storage.get(late) == b"late"  # synced when the block ends
    assert len(_stored_names(tmp_path / "files")) == 3
    assert all(_is_content_address(n) for n in _stored_names(tmp_path / "files"))


def test_deferred_storage_writes_of_a_failed_block_are_discarded(tmp_path):
    storage = FilesystemStorage(str(tmp_path / "files"))
    kept = storage.put(b"committed earlier", kind="att")
    with pytest.raises(RuntimeError):
        with storage.deferred_sync():
            storage.put(b"never committed", kind="att")
            storage.put_stream(iter([b"never ", b"committed either"]), kind="att")
            raise RuntimeError("the poll broke off")
    assert _stored_names(tmp_path / "files") == [os.path.basename(kept)]
    assert storage.put(b"after", kind="att")  # outside a block: written and fsynced at once
    assert len(_stored_names(tmp_path / "files")) == 2


def test_a_poll_leaves_every_file_under_its_name_and_nothing_else(host, mail_server):
    payload = random.Random(8).randbytes(120_000)  # above the large-part size: streamed
    raw = (b"From: A <a@example.org>\r\nTo: support@example.com\r\nSubject: With file\r\n"
           b"Message-ID: <file-1@example.org>\r\nContent-Type: multipart/mixed; boundary=b\r\n"
           b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\n"
           b"Content-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; "
           b"filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(payload).replace(b"\n", b"\r\n") + b"--b--\r\n")
    mail_server.deliver("support@example.com", raw)
    for i in range(3):
        mail_server.deliver("support@example.com", mail(f"Plain {i}"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    assert poll(host, mailbox).ingested == 4
    storage = host.app.extensions["shared_inbox"].storage
    names = _stored_names(storage.root)
    # The batch's four raw mails in one pack, the attachment under its content address.
    packs = [n for n in names if re.fullmatch(r"[0-9a-f]{32}\.pack", n)]
    assert len(names) == 2 and len(packs) == 1, names
    assert all(_is_content_address(n) for n in names if n not in packs), names
    with host.app.app_context():
        m = host.inbox.models
        att = host.db.session.scalar(sa.select(m.Attachment))
        assert storage.get(att.storage_key) == payload and att.filename == "a.pdf"


def test_a_failing_storage_sync_commits_nothing_that_points_at_a_missing_file(
        host, mail_server, monkeypatch):
    """The batch's sync fails once (disk full, I/O error): its transaction is not
    committed; the slow path stores every message again, so none is lost."""
    import shared_inbox.storage as storage_module

    for i in range(4):
        mail_server.deliver("support@example.com", mail(f"Sync {i}"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    real, calls = storage_module._fsync_all, []

    def failing_once(paths, *args):
        calls.append(len(paths))
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(paths, *args)

    monkeypatch.setattr(storage_module, "_fsync_all", failing_once)
    result = poll(host, mailbox)
    assert len(calls) > 1  # the failure happened, and later syncs went through
    assert (result.ingested, result.error) == (4, None)
    assert [t[0] for t in tickets(host)] == [f"Sync {i}" for i in range(4)]
    storage = host.app.extensions["shared_inbox"].storage
    with host.app.app_context():
        m = host.inbox.models
        for message in host.db.session.scalars(sa.select(m.Message)):
            assert b"Sync" in storage.get(message.raw_key)
    assert all(_is_content_address(n) for n in _stored_names(storage.root))


def test_sweep_removes_only_old_temporary_files(tmp_path):
    """What a killed poller leaves (a file written, never renamed) is removed after a day;
    stored files, and a write in progress right now, are not."""
    storage = FilesystemStorage(str(tmp_path / "files"))
    key = storage.put(b"kept", kind="raw", suffix=".eml")
    directory = os.path.dirname(storage._path(key))
    day_old = os.path.getmtime(storage._path(key)) - 2 * 86400
    orphans = []
    for name in (".tmp-abc123", ".partial-x_9", "tmpab12cd34"):
        path = os.path.join(directory, name)
        with open(path, "wb") as fh:
            fh.write(b"half a message")
        os.utime(path, (day_old, day_old))
        orphans.append(path)
    os.utime(storage._path(key), (day_old, day_old))  # old, but a stored file
    in_progress = os.path.join(directory, ".tmp-now")
    with open(in_progress, "wb") as fh:
        fh.write(b"being written")
    assert storage.sweep() == 3
    assert not any(os.path.exists(p) for p in orphans)
    assert os.path.exists(in_progress) and storage.get(key) == b"kept"
    assert storage.sweep() == 0


def test_the_scheduler_sweeps_storage(host):
    from shared_inbox.scheduler import make_scheduler, storage_sweep_job

    assert "storage_sweep" in {job.id for job in make_scheduler(host.app).get_jobs()}
    storage = host.app.extensions["shared_inbox"].storage
    os.makedirs(storage.root, exist_ok=True)
    orphan = os.path.join(storage.root, ".partial-left")
    with open(orphan, "wb") as fh:
        fh.write(b"x")
    os.utime(orphan, (1, 1))
    storage_sweep_job(host.app)
    assert not os.path.exists(orphan)


def test_a_failed_batch_leaves_no_file_that_no_row_refers_to(host, mail_server, monkeypatch):
    """The batch fails after its hot path wrote the raw mails of the first two (one pack,
    not yet synced): that pack is thrown away with the transaction, and the messages are
    stored again one at a time. Nothing on disk is left that no row points at."""
    import shared_inbox.services.ingest as ingest_module

    for i in range(4):
        raw = mail(f"Msg {i}")
        if i == 2:  # no Message-ID: the full path, inside the batch
            raw = re.sub(rb"Message-ID: [^\n]*\n", b"", raw)
        mail_server.deliver("support@example.com", raw)
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    real, calls = ingest_module._ingest_parsed, []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "_ingest_parsed", failing_once)
    result = poll(host, mailbox)
    assert (result.ingested, result.error) == (4, None)
    assert [t[0] for t in tickets(host)] == [f"Msg {i}" for i in range(4)]
    storage = host.app.extensions["shared_inbox"].storage
    with host.app.app_context():
        m = host.inbox.models
        keys = set(host.db.session.scalars(sa.select(m.Message.raw_key)))
        keys |= set(host.db.session.scalars(sa.select(m.Attachment.storage_key)))
    referenced = {os.path.basename(k.split("@")[0]) for k in keys if k}
    assert _stored_names(storage.root) == sorted(referenced)
