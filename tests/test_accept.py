"""The poller's hot path (services/accept.py): a FETCH batch threaded into tickets from the
header blocks, the bodies parsed right after (services/complete.py) or by the ticket page."""
import os
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from shared_inbox.mail import imap as imap_module
from shared_inbox.models import utcnow
from shared_inbox.storage import FilesystemStorage

from test_poll import add_mailbox, mail, poll, tickets


def _without_body_parsing(monkeypatch):
    """The poll stops after the hot path, as if the process died before parsing bodies."""
    monkeypatch.setattr(imap_module, "_complete_bodies", lambda mailbox: None)
    monkeypatch.setattr(imap_module, "_automate", lambda mailbox: None)


def test_replies_in_the_same_batch_join_the_ticket_of_the_mail_they_answer(host, mail_server):
    mail_server.deliver("support@example.com", mail("Order 17 is late", msgid="first",
                                                    name=""))
    mail_server.deliver("support@example.com", mail(
        "Re: Order 17 is late", body="Any news?", msgid="second", In_Reply_To="<first@example.org>"))
    mail_server.deliver("support@example.com", mail(
        "Re: Order 17 is late", body="Hello??", msgid="third",
        References="<first@example.org> <second@example.org>"))
    mail_server.deliver("support@example.com", mail("Something else", sender="bob@example.org",
                                                    name="Bob"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    result = poll(host, mailbox)
    assert (result.ingested, result.error) == (4, None)
    # The first mail gave no name; the second, in the same batch, fills it in.
    assert tickets(host) == [("Order 17 is late", 3, "alice@example.org"),
                             ("Something else", 1, "bob@example.org")]
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        rows = session.execute(sa.select(m.Message.thread_reason, m.Message.body_pending,
                                         m.Message.reply_text).order_by(m.Message.id)).all()
        assert [r[0] for r in rows] == [
            "new conversation", "matched In-Reply-To <first@example.org>",
            "matched References <second@example.org>", "new conversation"]
        assert [r[1] for r in rows] == [False] * 4  # bodies parsed after the batch
        assert rows[2][2].strip() == "Hello??"
        assert session.scalar(sa.select(m.Customer.name).where(
            m.Customer.email == "alice@example.org")) == "Alice"
        ticket = session.scalars(sa.select(m.Ticket).order_by(m.Ticket.id)).first()
        assert ticket.snippet == "Hello??"  # the newest mail's text, not an older one's
        actions = list(session.scalars(sa.select(m.Activity.action).where(
            m.Activity.ticket_id == ticket.id).order_by(m.Activity.id)))
        assert actions[:3] == ["created", "customer_replied", "customer_replied"]


def test_a_customer_mail_reopens_a_closed_ticket_once_and_keeps_an_agent_given_name(
        host, mail_server):
    an_hour_ago = (utcnow() - timedelta(hours=1)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    mail_server.deliver("support@example.com", mail("Refund", msgid="refund-1", Date=an_hour_ago))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    poll(host, mailbox)
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        ticket = session.scalars(sa.select(m.Ticket)).one()
        ticket.status, ticket.closed_at = "closed", utcnow()
        ticket.customer.name = "Alice Agent-Edited"
        last_inbound = ticket.last_inbound_at
        session.commit()
    for n in (2, 3):
        mail_server.deliver("support@example.com", mail(
            "Re: Refund", body=f"Follow-up {n}", msgid=f"refund-{n}", name="Spoofed Name",
            In_Reply_To="<refund-1@example.org>"))
    assert poll(host, mailbox).ingested == 2
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        ticket = session.scalars(sa.select(m.Ticket)).one()
        assert (ticket.status, ticket.closed_at, ticket.message_count) == ("open", None, 3)
        assert ticket.last_inbound_at > last_inbound
        assert ticket.customer.name == "Alice Agent-Edited"
        actions = [a for a, in session.execute(sa.select(m.Activity.action).where(
            m.Activity.ticket_id == ticket.id).order_by(m.Activity.id))]
        assert actions.count("reopened") == 1 and actions.count("customer_replied") == 2


def test_the_same_message_id_twice_in_a_batch_is_decided_by_content(host, mail_server):
    """An exact copy is one message; a sender reusing the Message-ID for new mail is not
    skipped (the second takes the full path, which reads the first's raw copy)."""
    mail_server.deliver("support@example.com", mail("Shipped", body="Parcel 1", msgid="ship"))
    mail_server.deliver("support@example.com", mail("Shipped", body="Parcel 1", msgid="ship"))
    mail_server.deliver("support@example.com", mail("Shipped", body="Parcel 2", msgid="ship"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    result = poll(host, mailbox)
    assert (result.ingested, result.skipped) == (2, 1)
    with host.app.app_context():
        m = host.inbox.models
        texts = host.db.session.scalars(sa.select(m.Message.body_text).order_by(m.Message.id))
        assert [t.strip() for t in texts] == ["Parcel 1", "Parcel 2"]


def test_a_ticket_opened_before_its_body_is_parsed_shows_the_whole_mail(
        host, mail_server, monkeypatch):
    _without_body_parsing(monkeypatch)
    mail_server.deliver("support@example.com", mail(
        "Invoice question", body="Please see the attached invoice, line 3 is wrong.",
        msgid="inv"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    assert poll(host, mailbox).ingested == 1
    with host.app.app_context():
        m = host.inbox.models
        message = host.db.session.scalars(sa.select(m.Message)).one()
        assert message.body_pending and message.body_text == ""
        ticket_id = message.ticket_id
    client, _agent = host.member_client(mailbox)
    page = client.get(f"/support/tickets/{ticket_id}")
    assert page.status_code == 200
    assert "line 3 is wrong" in page.get_data(as_text=True)
    with host.app.app_context():
        m = host.inbox.models
        message = host.db.session.scalars(sa.select(m.Message)).one()
        assert not message.body_pending and "line 3 is wrong" in message.body_text
        assert "line 3 is wrong" in message.ticket.snippet


def test_automation_waits_for_the_body_then_runs(host, mail_server, monkeypatch):
    _without_body_parsing(monkeypatch)
    mail_server.deliver("support@example.com", mail("Hello", msgid="hello"))
    mailbox = add_mailbox(host, mail_server, "support@example.com", since_days=None)
    # Only new mail: the cursor starts after what is there; this mail arrives later.
    poll(host, mailbox)
    mail_server.deliver("support@example.com", mail("New one", msgid="new-one"))
    assert poll(host, mailbox).ingested == 1
    from shared_inbox.services.automation import pending_ids, process_pending
    from shared_inbox.services.complete import complete_pending
    with host.app.app_context():
        assert pending_ids() == []  # the body is not parsed yet: rules would read nothing
        assert not process_pending()
        assert complete_pending() == 1
        assert len(pending_ids()) == 1


def test_a_batch_is_stored_in_one_pack_and_each_original_downloads_whole(
        host, mail_server):
    raws = [mail(f"Packed {i}", body=f"Body {i}\n" * (i + 1), msgid=f"packed-{i}")
            for i in range(3)]
    for raw in raws:
        mail_server.deliver("support@example.com", raw)
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    assert poll(host, mailbox).ingested == 3
    with host.app.app_context():
        m = host.inbox.models
        rows = host.db.session.execute(sa.select(m.Message.id, m.Message.raw_key)
                                       .order_by(m.Message.id)).all()
    packs = {key.split("@")[0] for _pk, key in rows}
    assert len(packs) == 1 and all(re.search(r"\.pack@\d+\+\d+$", k) for _pk, k in rows)
    client, _agent = host.member_client(mailbox)
    for (pk, _key), raw in zip(rows, raws):
        original = client.get(f"/support/messages/{pk}/original")
        assert original.status_code == 200
        # The server may rewrite line ends; the mail itself is byte for byte what was sent.
        assert original.data.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")


def test_storage_packs_survive_only_when_synced(tmp_path):
    storage = FilesystemStorage(str(tmp_path))
    with storage.deferred_sync():
        keys = storage.put_many([b"one", b"", b"three"], kind="raw")
        assert [storage.get(k) for k in keys] == [b"one", b"", b"three"]  # before the sync
    assert [storage.get(k) for k in keys] == [b"one", b"", b"three"]
    # A batch rolled back: its pack is thrown away, no file is left.
    with storage.deferred_sync():
        lost = storage.put_many([b"never committed"], kind="raw")
        storage.discard()
    assert not os.path.exists(tmp_path / lost[0].split("@")[0])
    # Only the synced pack is on disk: no temporary file either.
    assert [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()] \
        == [keys[0].split("@")[0]]
    # A key that claims more than the pack holds is an error, not a short read.
    bad = re.sub(r"\+\d+$", "+99", keys[0])
    try:
        storage.get(bad)
    except OSError as exc:
        assert "shorter" in str(exc)
    else:
        raise AssertionError("a truncated pack was read without an error")


# ----------------------------------------------------------------------------- same result

def _stored(host) -> dict:
    """Per UID: what a user can see of the message it became (or None for a duplicate),
    its ticket, and which UIDs share a ticket."""
    storage = host.app.extensions["shared_inbox"].storage
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        out, ticket_of = {}, {}
        for uid, pk in session.execute(sa.select(m.FetchedUid.uid, m.FetchedUid.message_pk)):
            msg = session.get(m.Message, pk)
            if msg is None:
                out[uid] = None
                continue
            t = msg.ticket
            ticket_of[uid] = t.id
            out[uid] = dict(
                message={c: getattr(msg, c) for c in (
                    "kind", "subject", "from_name", "from_email", "to", "cc", "message_id",
                    "in_reply_to", "references", "headers", "is_automated", "is_bounce",
                    "is_malformed", "parse_error", "body_text", "reply_text", "body_html",
                    "content_hash", "thread_reason", "date", "raw_size", "body_pending",
                    "automation_state")},
                raw=storage.get(msg.raw_key),
                attachments=sorted(
                    (a.filename, a.content_type, a.size, a.content_id, a.is_inline,
                     storage.get(a.storage_key)) for a in msg.attachments),
                ticket={c: getattr(t, c) for c in (
                    "subject", "status", "message_count", "snippet", "is_flagged",
                    "created_at", "last_message_at", "last_inbound_at")},
                customer=(t.customer.email, t.customer.name) if t.customer else None,
            )
        groups = {}
        for uid, tid in ticket_of.items():
            groups.setdefault(tid, set()).add(uid)
        return out, sorted(sorted(g) for g in groups.values())


def test_the_hot_path_and_the_full_path_store_the_same_corpus(make_host, tmp_path):
    """Every corpus mail, polled in batches through the hot path and completed after, ends
    up exactly as the one-message full path stores it: fields, text, sanitized HTML,
    attachments, raw bytes, duplicates, tickets and threads."""
    from datetime import datetime

    from test_corpus_ingest import corpus_emails

    from shared_inbox.services.accept import BatchAcceptor
    from shared_inbox.services.complete import complete_pending
    from shared_inbox.services.ingest import commit_with_files, ingest

    files = corpus_emails()
    if not files:
        pytest.skip("corpus not available at ../shared/corpus")
    received = datetime(2026, 1, 2, 3, 4, 5)
    started = utcnow()
    hot = make_host()
    reference = make_host(database_url=f"sqlite:///{tmp_path}/reference.db")
    hosts = (hot, reference)
    for h in hosts:
        h.create_tables()
        with h.app.app_context():
            h.db.session.add(h.inbox.models.Mailbox(name="Support",
                                                    email_address="support@example.com"))
            h.db.session.commit()
    raws = [path.read_bytes() for path in files]
    with reference.app.app_context():
        mailbox = reference.db.session.get(reference.inbox.models.Mailbox, 1)
        for uid, raw in enumerate(raws, start=1):
            ingest(mailbox, raw, folder="INBOX", uidvalidity=1, uid=uid, received_at=received)
    with hot.app.app_context():
        mailbox = hot.db.session.get(hot.inbox.models.Mailbox, 1)
        taken = 0
        for start in range(0, len(raws), 50):
            acceptor = BatchAcceptor(mailbox, "INBOX", 1, imported=False)
            items = [(uid, raw, received) for uid, raw in
                     enumerate(raws[start:start + 50], start=start + 1)]
            taken += sum(1 for _u, raw, _r in items if acceptor.read_header_block(raw))
            acceptor.ingest_items(items)
            commit_with_files()
        assert taken > len(raws) // 2  # most real mail takes the hot path
        complete_pending()
    got, got_threads = _stored(hot)
    want, want_threads = _stored(reference)
    assert len(got) == len(want) == len(files)
    differences = []
    for uid, path in enumerate(files, start=1):
        if got[uid] is None or want[uid] is None:
            if got[uid] != want[uid]:
                differences.append(f"{path}: duplicate in one path only")
            continue
        for part in want[uid]:
            if isinstance(want[uid][part], dict):
                for k, v in want[uid][part].items():  # a date in the future: "now", twice
                    if isinstance(v, datetime) and v >= started <= got[uid][part][k]:
                        got[uid][part][k] = v
                differences += [f"{path}: {part}.{k}: {got[uid][part].get(k)!r:.200} != "
                                f"{v!r:.200}" for k, v in want[uid][part].items()
                                if got[uid][part].get(k) != v]
            elif got[uid][part] != want[uid][part]:
                differences.append(f"{path}: {part} differs")
    assert not differences, "\n".join(differences)
    assert got_threads == want_threads
