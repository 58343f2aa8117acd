"""The walking skeleton end to end: mail in a real IMAP mailbox becomes threaded tickets."""
import re
import threading
from datetime import timedelta
from email.message import EmailMessage

import imapclient
import pytest
import sqlalchemy as sa

from shared_inbox.mail.demo_mail import demo_messages
from shared_inbox.mail.imap import poll_all, poll_mailbox
from shared_inbox.models import utcnow


def add_mailbox(host, server, address, *, password=None, since_days=30):
    with host.app.app_context():
        m = host.inbox.models
        mailbox = m.Mailbox(
            name=address.split("@")[0].title(), email_address=address, imap_host="127.0.0.1",
            imap_port=server.imap_port, imap_security="plain", imap_username=address,
            import_since=utcnow() - timedelta(days=since_days) if since_days is not None else None,
        )
        mailbox.imap_password = password or server.users[address]
        host.db.session.add(mailbox)
        host.db.session.commit()
        return mailbox.id


def poll(host, mailbox_id=None):
    with host.app.app_context():
        if mailbox_id is None:
            return poll_all()
        return poll_mailbox(host.db.session.get(host.inbox.models.Mailbox, mailbox_id))


def mail(subject, body="Hello", sender="alice@example.org", name="Alice", msgid=None, **headers):
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = "support@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{msgid or subject.replace(' ', '-')}@example.org>"
    for key, value in headers.items():
        msg[key.replace("_", "-")] = value
    msg.set_content(body)
    return bytes(msg)


def tickets(host):
    with host.app.app_context():
        m = host.inbox.models
        rows = host.db.session.scalars(sa.select(m.Ticket).order_by(m.Ticket.id)).all()
        return [(t.subject, t.message_count, t.customer.email if t.customer else None) for t in rows]


def test_demo_mail_becomes_threaded_tickets_visible_in_the_dashboard(host, mail_server):
    for rcpt, raw in demo_messages():
        mail_server.deliver(rcpt, raw)
    ids = [add_mailbox(host, mail_server, a) for a in mail_server.users]
    results = poll(host)
    assert all(r.error is None for r in results), results
    total = sum(r.ingested for r in results)
    assert total == len(demo_messages())

    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        # Follow-ups joined the ticket of the customer's first mail, and say why: by
        # In-Reply-To, or by References when In-Reply-To names a mail we never saw.
        followups = session.scalars(
            sa.select(m.Message).where(m.Message.thread_reason.like("matched %")).order_by(m.Message.id)).all()
        reasons = {msg.thread_reason.split(" <")[0] for msg in followups}
        assert reasons == {"matched In-Reply-To", "matched References"}
        for msg in followups:
            assert msg.ticket.message_count >= 2
        # Non-ASCII names arrive decoded.
        names = set(session.scalars(sa.select(m.Customer.name)))
        assert any("ü" in n or "ñ" in n or "山田" in n for n in names), names
        # HTML mail is stored sanitized: no script, no remote image that would fire on open.
        html = [h for h in session.scalars(sa.select(m.Message.body_html)) if h]
        assert html and all("<script" not in h for h in html)
        assert not any(re.search(r'\ssrc="https?:', h) for h in html)
        assert any('data-remote-src="https://tracker.example.net/p.gif"' in h for h in html)
        # Attachments live in storage, not in the row.
        att = session.scalars(sa.select(m.Attachment).where(m.Attachment.is_inline.is_(False))).first()
        assert att is not None and att.size > 0
        assert host.app.extensions["shared_inbox"].storage.get(att.storage_key)
        quoting = [msg for msg in followups if "wrote:" in msg.body_text]
        assert quoting
        ticket_id = quoting[0].ticket_id

    admin = host.add_user("boss@example.com", role="admin")
    client = host.app.test_client()
    host.login(client, admin)
    page = client.get("/support/").get_data(as_text=True)
    assert page.count('class="si-ticket-row') == len(tickets(host))
    page = client.get(f"/support/tickets/{ticket_id}").get_data(as_text=True)
    assert "Show quoted text" in page
    assert "matched " in page
    assert len(ids) == 3


def test_polling_twice_never_duplicates_and_leaves_flags_alone(host, mail_server):
    mail_server.deliver("support@example.com", mail("First"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    assert poll(host, mailbox).ingested == 1
    assert poll(host, mailbox).ingested == 0
    mail_server.deliver("support@example.com", mail("Second"))
    result = poll(host, mailbox)
    assert (result.ingested, result.skipped) == (1, 0)
    assert [t[0] for t in tickets(host)] == ["First", "Second"]
    # People reading the mailbox in Outlook still see the mail as unread.
    with imapclient.IMAPClient("127.0.0.1", port=mail_server.imap_port, ssl=False) as c:
        c.login("support@example.com", "support")
        c.select_folder("INBOX", readonly=True)
        flags = c.get_flags(c.search(["ALL"]))
        assert all(imapclient.SEEN not in f for f in flags.values())


def test_only_new_mail_when_added_without_history(host, mail_server):
    mail_server.deliver("support@example.com", mail("Old history"))
    mailbox = add_mailbox(host, mail_server, "support@example.com", since_days=None)
    assert poll(host, mailbox).ingested == 0
    mail_server.deliver("support@example.com", mail("Arrived later"))
    assert poll(host, mailbox).ingested == 1
    assert [t[0] for t in tickets(host)] == ["Arrived later"]


def test_a_broken_message_is_kept_flagged_and_does_not_stop_the_poll(host, mail_server):
    mail_server.deliver("support@example.com", mail("Before"))
    mail_server.deliver("support@example.com",
                        b"From: \"broken <\r\nContent-Type: multipart/mixed; boundary=\"\r\n"
                        b"Content-Transfer-Encoding: base64\r\n\r\n\x00\xff\xfe=====garbage")
    mail_server.deliver("support@example.com", mail("After"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    assert poll(host, mailbox).ingested == 3
    subjects = [t[0] for t in tickets(host)]
    assert subjects[0] == "Before" and subjects[-1] == "After" and len(subjects) == 3
    with host.app.app_context():
        m = host.inbox.models
        broken = host.db.session.scalars(sa.select(m.Ticket).where(m.Ticket.id == 2)).one()
        assert broken.messages[0].raw_key  # the original bytes are kept
        raw = host.app.extensions["shared_inbox"].storage.get(broken.messages[0].raw_key)
        assert b"garbage" in raw


def test_same_mail_to_two_of_our_mailboxes_is_one_conversation(host, mail_server):
    raw = mail("Quote for 40 tents", msgid="bulk-1")
    mail_server.deliver("support@example.com", raw)
    mail_server.deliver("sales@example.com", raw)
    add_mailbox(host, mail_server, "support@example.com")
    add_mailbox(host, mail_server, "sales@example.com")
    poll(host)
    assert tickets(host) == [("Quote for 40 tents", 1, "alice@example.org")]


def test_reused_message_id_with_new_content_is_not_skipped(host, mail_server):
    mail_server.deliver("support@example.com", mail("Your parcel", "Out for delivery", msgid="notify"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    poll(host, mailbox)
    mail_server.deliver("support@example.com", mail("Your parcel", "Delivered", msgid="notify"))
    assert poll(host, mailbox).ingested == 1
    with host.app.app_context():
        texts = host.db.session.scalars(sa.select(host.inbox.models.Message.body_text)).all()
    assert sorted(t.strip() for t in texts) == ["Delivered", "Out for delivery"]


def test_subject_token_joins_only_from_the_same_customer(host, mail_server):
    mail_server.deliver("support@example.com", mail("Broken zip", msgid="z1"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    poll(host, mailbox)
    mail_server.deliver("support@example.com", mail("Re: [#1] Broken zip", "photo attached", msgid="z2"))
    mail_server.deliver("support@example.com",
                        mail("Re: [#1] Broken zip", "me too", sender="mallory@evil.test", msgid="z3"))
    poll(host, mailbox)
    assert tickets(host) == [("Broken zip", 2, "alice@example.org"),
                             ("Re: [#1] Broken zip", 1, "mallory@evil.test")]


def test_customer_reply_reopens_a_closed_ticket(host, mail_server):
    mail_server.deliver("support@example.com", mail("Stove leaks", msgid="s1"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    poll(host, mailbox)
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, 1)
        t.status = "closed"
        host.db.session.commit()
    mail_server.deliver("support@example.com",
                        mail("Re: Stove leaks", "Still leaking", msgid="s2", In_Reply_To="<s1@example.org>"))
    poll(host, mailbox)
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, 1)
        assert t.status == "open" and t.message_count == 2
        assert [a.action for a in host.db.session.scalars(
            sa.select(host.inbox.models.Activity).order_by(host.inbox.models.Activity.id))] == [
            "created", "reopened", "customer_replied"]


def test_wrong_password_is_explained_and_other_mailboxes_still_poll(host, mail_server):
    mail_server.deliver("sales@example.com", mail("Bulk order"))
    add_mailbox(host, mail_server, "support@example.com", password="wrong")
    add_mailbox(host, mail_server, "sales@example.com")
    results = {r.mailbox: r for r in poll(host)}
    assert results["support@example.com"].error == "login failed: check the user name and password"
    assert results["sales@example.com"].ingested == 1
    with host.app.app_context():
        m = host.inbox.models
        box = host.db.session.scalar(sa.select(m.Mailbox).where(m.Mailbox.email_address == "support@example.com"))
        assert box.last_error.startswith("login failed")


def test_unreachable_server_and_missing_folder_are_explained(host, mail_server):
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    with host.app.app_context():
        box = host.db.session.get(host.inbox.models.Mailbox, mailbox)
        box.imap_folder = "Support"
        host.db.session.commit()
    assert poll(host, mailbox).error == "folder 'Support' not found on the server"
    with host.app.app_context():
        box = host.db.session.get(host.inbox.models.Mailbox, mailbox)
        box.imap_folder, box.imap_port = "INBOX", 1
        host.db.session.commit()
    assert poll(host, mailbox).error.startswith("cannot connect to 127.0.0.1:1")


def test_plain_imap_is_refused_off_this_machine(host, mail_server):
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    with host.app.app_context():
        host.db.session.get(host.inbox.models.Mailbox, mailbox).imap_host = "imap.example.com"
        host.db.session.commit()
    assert "only allowed to this machine" in poll(host, mailbox).error


def test_one_poller_at_a_time_per_mailbox(host, mail_server):
    for i in range(30):
        mail_server.deliver("support@example.com", mail(f"Message {i}"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    results = []

    def run():
        results.append(poll(host, mailbox))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.ingested for r in results) == 30
    assert len(tickets(host)) == 30


def _set(host, mailbox_id, **values):
    with host.app.app_context():
        box = host.db.session.get(host.inbox.models.Mailbox, mailbox_id)
        for key, value in values.items():
            setattr(box, key, value)
        host.db.session.commit()


def _server_flags(server, address, folder="INBOX"):
    with imapclient.IMAPClient("127.0.0.1", port=server.imap_port, ssl=False) as c:
        c.login(address, server.users[address])
        c.select_folder(folder, readonly=True)
        return c.get_flags(c.search(["ALL"]))


def test_mark_seen_after_fetch_when_the_admin_asks(host, mail_server):
    mail_server.deliver("support@example.com", mail("Mark me"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    _set(host, mailbox, after_fetch="seen")
    assert poll(host, mailbox).ingested == 1
    flags = _server_flags(mail_server, "support@example.com")
    assert [imapclient.SEEN in f for f in flags.values()] == [True]


def test_move_after_fetch_and_a_missing_target_folder_is_explained(host, mail_server):
    with imapclient.IMAPClient("127.0.0.1", port=mail_server.imap_port, ssl=False) as c:
        c.login("support@example.com", "support")
        c.create_folder("Processed")
    mail_server.deliver("support@example.com", mail("Move me"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    _set(host, mailbox, after_fetch="move", move_to_folder="Processed")
    assert poll(host, mailbox).ingested == 1
    assert _server_flags(mail_server, "support@example.com") == {}
    assert len(_server_flags(mail_server, "support@example.com", "Processed")) == 1
    # A new message and a folder that does not exist: the mail is still ingested, the
    # problem is reported on the mailbox.
    mail_server.deliver("support@example.com", mail("Second"))
    _set(host, mailbox, move_to_folder="Nowhere")
    result = poll(host, mailbox)
    assert result.ingested == 1
    assert result.error.startswith("could not move fetched mail to 'Nowhere'")
    assert len(tickets(host)) == 2


def test_a_failing_mailbox_backs_off_and_recovers(host, mail_server):
    mail_server.deliver("support@example.com", mail("Waiting"))
    mailbox = add_mailbox(host, mail_server, "support@example.com", password="wrong")
    assert poll(host)[0].error
    # Within the back-off window the scheduler leaves it alone...
    assert poll(host) == []
    with host.app.app_context():
        box = host.db.session.get(host.inbox.models.Mailbox, mailbox)
        assert box.failure_count == 1 and box.next_poll_at > utcnow()
        box.imap_password = "support"
        box.next_poll_at = utcnow() - timedelta(seconds=1)
        host.db.session.commit()
    # ...and once it is due again and fixed, it polls and forgets the failure.
    [result] = poll(host)
    assert result.ingested == 1 and result.error is None
    with host.app.app_context():
        box = host.db.session.get(host.inbox.models.Mailbox, mailbox)
        assert (box.failure_count, box.next_poll_at, box.last_error) == (0, None, None)


def test_imported_history_is_marked_and_new_mail_is_not(host, mail_server):
    mail_server.deliver("support@example.com", mail("From last month"))
    mailbox = add_mailbox(host, mail_server, "support@example.com", since_days=30)
    poll(host, mailbox)
    mail_server.deliver("support@example.com", mail("Today"))
    poll(host, mailbox)
    with host.app.app_context():
        m = host.inbox.models
        rows = host.db.session.execute(sa.select(m.Message.subject, m.Message.is_imported)
                                       .order_by(m.Message.id)).all()
    assert [tuple(r) for r in rows] == [("From last month", True), ("Today", False)]


def test_a_crash_between_fetch_and_commit_loses_and_duplicates_nothing(make_host, mail_server, monkeypatch):
    """The process dies (not an exception the loop handles) while storing message 3 of 5.

    Each FETCH batch (here of 2) is one transaction: the batch of messages 1-2 is
    committed, the crash loses the batch of message 3 (fetched again by the next poll)."""
    from shared_inbox.services.accept import BatchAcceptor

    host = make_host(config={"SHARED_INBOX_FETCH_BATCH_SIZE": 2})
    host.create_tables()
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
    assert len(tickets(host)) == 2
    # The lease of the dead poller expires; the next poll takes over and finishes the job.
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.execute(sa.update(m.SyncState).values(lease_until=utcnow() - timedelta(seconds=1)))
        host.db.session.commit()
    result = poll(host, mailbox)
    assert result.ingested == 3 and result.error is None
    assert [t[0] for t in tickets(host)] == [f"Crash {i}" for i in range(5)]
    assert poll(host, mailbox).ingested == 0
    # The bodies of the batch committed before the crash were parsed by the next poll.
    with host.app.app_context():
        m = host.inbox.models
        rows = host.db.session.execute(sa.select(m.Message.body_pending, m.Message.body_text)
                                       .order_by(m.Message.id)).all()
        assert [pending for pending, _text in rows] == [False] * 5
        assert all(text.strip() for _pending, text in rows)


def test_agent_splits_a_wrongly_attached_message_and_later_replies_follow_it(host, mail_server):
    mail_server.deliver("support@example.com", mail("Tent question", msgid="q1"))
    # A different question that reused the old thread (Reply instead of New message).
    mail_server.deliver("support@example.com", mail(
        "Re: Tent question", "Unrelated: do you sell stoves?", msgid="q2", In_Reply_To="<q1@example.org>"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    poll(host, mailbox)
    assert tickets(host) == [("Tent question", 2, "alice@example.org")]
    agent = host.add_user("ada@example.com")
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.add(m.MailboxMember(mailbox_id=mailbox, user_id=agent))
        host.db.session.commit()
        second = host.db.session.scalar(sa.select(m.Message.id).where(m.Message.message_id == "q2@example.org"))
        first = host.db.session.scalar(sa.select(m.Message.id).where(m.Message.message_id == "q1@example.org"))
    client = host.app.test_client()
    host.login(client, agent)
    page = client.get("/support/tickets/1").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    assert f"/support/messages/{second}/split" in page and f"/support/messages/{first}/split" not in page
    r = client.post(f"/support/messages/{second}/split", data={"csrf_token": token}, follow_redirects=True)
    assert "now has its own ticket, #2" in r.get_data(as_text=True)
    assert tickets(host) == [("Tent question", 1, "alice@example.org"),
                             ("Re: Tent question", 1, "alice@example.org")]
    # The only message left cannot be split off.
    r = client.post(f"/support/messages/{first}/split", data={"csrf_token": token}, follow_redirects=True)
    assert "only message of the ticket" in r.get_data(as_text=True)
    # The customer answers the split message: the answer joins the new ticket.
    mail_server.deliver("support@example.com", mail(
        "Re: Re: Tent question", "The 2-burner one", msgid="q3", In_Reply_To="<q2@example.org>"))
    poll(host, mailbox)
    assert tickets(host)[1] == ("Re: Tent question", 2, "alice@example.org")
    with host.app.app_context():
        actions = host.db.session.scalars(sa.select(host.inbox.models.Activity.action)).all()
    assert "split" in actions and "split_from" in actions


def test_uidvalidity_change_resynchronises_without_duplicates(host, mail_server):
    mail_server.deliver("support@example.com", mail("With id"))
    mail_server.deliver("support@example.com", b"From: Bob <bob@example.org>\r\nSubject: No id\r\n"
                        b"Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nno Message-ID header\r\n")
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    assert poll(host, mailbox).ingested == 2
    # The server renumbered the folder (restored from backup, migrated...): every UID we
    # know is void, so everything is fetched again and recognised by Message-ID / content.
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.execute(sa.update(m.SyncState).values(uidvalidity=1))
        host.db.session.execute(sa.update(m.FetchedUid).values(uidvalidity=1))
        host.db.session.commit()
    mail_server.deliver("support@example.com", mail("New after renumbering"))
    result = poll(host, mailbox)
    assert (result.ingested, result.skipped, result.error) == (1, 2, None)
    assert [t[0] for t in tickets(host)] == ["With id", "No id", "New after renumbering"]
    with host.app.app_context():
        assert host.db.session.scalar(sa.select(sa.func.count(host.inbox.models.Message.id))) == 3


def test_oversized_message_becomes_a_flagged_placeholder_and_the_rest_still_arrives(make_host, mail_server):
    host = make_host(config={"SHARED_INBOX_MAX_MESSAGE_SIZE": 50_000})
    host.create_tables()
    mail_server.deliver("support@example.com", mail("Huge scan", "x" * 200_000))
    mail_server.deliver("support@example.com", mail("Small question"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    assert poll(host, mailbox).ingested == 2
    subjects = [t[0] for t in tickets(host)]
    assert subjects[0].startswith("(message of") and "not downloaded" in subjects[0]
    assert subjects[1] == "Small question"


def test_inline_cid_images_are_served_to_the_html_and_scripts_are_not(host, mail_server):
    from email.message import EmailMessage

    from shared_inbox.mail.demo_mail import tiny_png

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Zoe <zoe@example.org>", "support@example.com", "Photo"
    msg["Message-ID"] = "<cid-test@example.org>"
    msg.set_content("see photo")
    msg.add_alternative('<p>See <img src="cid:photo1"></p><script>alert(1)</script>', subtype="html")
    msg.get_payload()[1].add_related(tiny_png(), "image", "png", cid="<photo1>")
    mail_server.deliver("support@example.com", bytes(msg))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    poll(host, mailbox)
    admin = host.add_user("boss@example.com", role="admin")
    client = host.app.test_client()
    host.login(client, admin)
    page = client.get("/support/tickets/1").get_data(as_text=True)
    assert "srcdoc=" in page and "alert(1)" not in page
    with host.app.app_context():
        att = host.db.session.scalar(sa.select(host.inbox.models.Attachment))
        assert att.is_inline
    assert f"/support/attachments/{att.id}?inline=1" in page
    r = client.get(f"/support/attachments/{att.id}?inline=1")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert r.headers["Content-Disposition"].startswith("inline")


def _outbound(host, ticket_id, message_id):
    """A reply we sent (sending itself is the dashboard's job)."""
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.add(m.Message(ticket_id=ticket_id, kind="outbound", message_id=message_id,
                                      from_email="support@example.com", subject="Re: Stove leaks",
                                      body_text="We sent a new valve.", send_status="sent"))
        t = host.db.session.get(m.Ticket, ticket_id)
        t.status = "closed"
        host.db.session.commit()


def test_a_bounce_attaches_to_the_ticket_of_the_reply_that_bounced(host, mail_server):
    mail_server.deliver("support@example.com", mail("Stove leaks", msgid="s1"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    poll(host, mailbox)
    _outbound(host, 1, "reply-1@example.com")
    dsn = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
        b"To: support@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"Message-ID: <dsn-1@mx.example.org>\r\nAuto-Submitted: auto-replied\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
        b"Final-Recipient: rfc822; alice@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@example.com\r\n"
        b"To: alice@example.org\r\nSubject: Re: Stove leaks\r\nMessage-ID: <reply-1@example.com>\r\n"
        b"--B--\r\n")
    mail_server.deliver("support@example.com", dsn)
    poll(host, mailbox)
    with host.app.app_context():
        m = host.inbox.models
        assert host.db.session.scalar(sa.select(sa.func.count(m.Ticket.id))) == 1
        ticket = host.db.session.get(m.Ticket, 1)
        bounce = host.db.session.scalar(sa.select(m.Message).where(m.Message.is_bounce))
        reply = host.db.session.scalar(sa.select(m.Message).where(m.Message.kind == "outbound"))
        assert bounce.ticket_id == 1 and bounce.thread_reason == "bounce of <reply-1@example.com>"
        assert reply.send_status == "bounced" and ticket.is_flagged
        # A machine wrote, not the customer: the closed ticket stays closed.
        assert ticket.status == "closed"


def test_an_out_of_office_reply_joins_but_does_not_reopen_or_wait(host, mail_server):
    mail_server.deliver("support@example.com", mail("Stove leaks", msgid="s1"))
    mailbox = add_mailbox(host, mail_server, "support@example.com")
    poll(host, mailbox)
    _outbound(host, 1, "reply-1@example.com")
    mail_server.deliver("support@example.com", mail(
        "Automatic reply: Re: Stove leaks", "I am on holiday until Monday.", msgid="ooo",
        In_Reply_To="<reply-1@example.com>", Auto_Submitted="auto-replied"))
    poll(host, mailbox)
    with host.app.app_context():
        m = host.inbox.models
        ticket = host.db.session.get(m.Ticket, 1)
        ooo = host.db.session.scalar(sa.select(m.Message).where(m.Message.message_id == "ooo@example.org"))
        assert ooo.ticket_id == 1 and ooo.is_automated and not ooo.is_bounce
        assert ticket.status == "closed" and not ticket.is_waiting
        assert "holiday" not in ticket.snippet


def test_the_ticket_page_marks_bounces_and_automatic_mail(host, mail_server):
    mail_server.deliver("support@example.com", mail("Stove leaks", msgid="s1"))
    mail_server.deliver("support@example.com", mail(
        "Automatic reply: Stove leaks", "On holiday", msgid="ooo", In_Reply_To="<s1@example.org>",
        Auto_Submitted="auto-replied"))
    poll(host, add_mailbox(host, mail_server, "support@example.com"))
    client = host.app.test_client()
    host.login(client, host.add_user("boss@example.com", role="admin"))
    page = client.get("/support/tickets/1").get_data(as_text=True)
    assert page.count(">automatic</span>") == 1 and "Auto-Submitted: auto-replied" in page
