"""Replies, notes and forwards end to end: dashboard form → outbox row → real SMTP server →
the customer's answer polled back over IMAP into the same ticket."""
import base64
import io
import threading
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from shared_inbox.mail.devserver import DevMailServer
from shared_inbox.models import utcnow
from shared_inbox.services.outbox import deliver_due
from test_poll import add_mailbox, mail, poll
from test_send import ScriptedSMTP, free_port

CSRF = "test-csrf-token"


@pytest.fixture
def server():
    with DevMailServer(users={"support@example.com": "support"}) as s:
        yield s


def setup_ticket(host, server, *, smtp_port=None, customer_headers=None):
    """Support mailbox on the dev server, one agent member, one customer ticket."""
    box = add_mailbox(host, server, "support@example.com")
    with host.app.app_context():
        mb = host.db.session.get(host.inbox.models.Mailbox, box)
        mb.smtp_host, mb.smtp_port, mb.smtp_security = "127.0.0.1", smtp_port or server.smtp_port, "plain"
        mb.signature = "Acme Support\nhttps://acme.example"
        host.db.session.commit()
    ada = host.add_user("ada@acme.test", name="Ada Lovelace")
    ben = host.add_user("ben@acme.test", name="Ben Jones")
    with host.app.app_context():
        for uid in (ada, ben):
            host.db.session.add(host.inbox.models.MailboxMember(mailbox_id=box, user_id=uid))
        host.db.session.commit()
    server.deliver("support@example.com", mail(
        "Where is my order", body="Order 42 has not arrived.", msgid="order42",
        References="<root@example.org>", Thread_Index=_thread_index(),
        **(customer_headers or {})))
    assert poll(host, box).ingested == 1
    with host.app.app_context():
        ticket_id = host.db.session.scalar(sa.select(host.inbox.models.Ticket.id))
    return box, ticket_id, ada, ben


def _thread_index():
    from shared_inbox.mail.send import new_thread_index

    return new_thread_index()


def client_for(host, user_id):
    client = host.app.test_client()
    host.login(client, user_id)
    with client.session_transaction() as sess:
        sess["_shared_inbox_csrf"] = CSRF
    return client


def post(client, url, **data):
    data.setdefault("csrf_token", CSRF)
    return client.post(url, data=data, content_type="multipart/form-data")


def deliver(host, **kw):
    with host.app.app_context():
        try:
            return deliver_due(force=True, **kw)
        finally:
            host.db.session.remove()


def messages(host, ticket_id):
    with host.app.app_context():
        m = host.inbox.models
        rows = host.db.session.scalars(sa.select(m.Message).where(m.Message.ticket_id == ticket_id)
                                       .order_by(m.Message.id)).all()
        out = [dict(id=r.id, kind=r.kind, status=r.send_status, error=r.send_error,
                    attempts=r.send_attempts, message_id=r.message_id, to=r.to,
                    in_reply_to=r.in_reply_to, references=r.references, next=r.next_attempt_at,
                    body=r.body_text, files=[a.filename for a in r.attachments]) for r in rows]
        host.db.session.remove()
        return out


def ticket_row(host, ticket_id):
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, ticket_id)
        out = dict(status=t.status, count=t.message_count, first=t.first_response_at,
                   last_out=t.last_outbound_at, snippet=t.snippet)
        host.db.session.remove()
        return out


def test_reply_is_queued_then_delivered_and_the_customer_answer_joins_the_ticket(host, server):
    box, ticket_id, ada, _ = setup_ticket(host, server)
    client = client_for(host, ada)
    r = post(client, f"/support/tickets/{ticket_id}/reply", text="Hi Alice,\n\nIt ships today.",
             action="send", attachments=(io.BytesIO(b"%PDF-1.4 label"), "label.pdf"))
    assert r.status_code == 302
    assert "Reply queued" in client.get(r.headers["Location"]).get_data(as_text=True)
    assert server.sent == []  # under app.testing nothing is sent by the request
    out = messages(host, ticket_id)[-1]
    assert (out["kind"], out["status"], out["files"]) == ("outbound", "queued", ["label.pdf"])
    assert out["in_reply_to"] == "order42@example.org"
    assert out["references"] == "root@example.org order42@example.org"
    t = ticket_row(host, ticket_id)
    assert t["status"] == "pending" and t["first"] and t["last_out"] and t["count"] == 2
    assert t["snippet"].startswith("Hi Alice")

    stats = deliver(host)
    assert stats.sent == 1
    sent = server.wait_for_sent(1)[0]
    assert sent.rcpt_tos == ["alice@example.org"] and sent.mail_from == "support@example.com"
    msg = message_from_bytes(sent.data, policy=policy.default)
    assert msg["From"] == "Ada Lovelace at Support <support@example.com>"
    assert msg["To"] == "Alice <alice@example.org>"
    assert msg["Subject"] == f"Re: Where is my order [#{ticket_id}]"
    assert msg["Message-ID"] == f"<{out['message_id']}>"
    assert msg["In-Reply-To"] == "<order42@example.org>"
    assert msg["References"] == "<root@example.org> <order42@example.org>"
    assert msg["Auto-Submitted"] is None
    assert msg["Thread-Topic"] == "Where is my order"
    index = base64.b64decode(msg["Thread-Index"], validate=True)
    assert len(index) == 27  # the customer's 22-byte header + our child block
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(("html",)).get_content()
    assert "It ships today." in text and "-- \nAcme Support" in text
    assert "<p>It ships today.</p>" in html and '<a href="https://acme.example">' in html
    files = [(p.get_filename(), p.get_content()) for p in msg.iter_attachments()]
    assert files == [("label.pdf", b"%PDF-1.4 label")]
    assert messages(host, ticket_id)[-1]["status"] == "sent"
    assert deliver(host).sent == 0  # nothing is sent twice

    # The customer's mail client answers our reply: it lands in the same ticket.
    answer = EmailMessage()
    answer["From"] = "Alice <alice@example.org>"
    answer["To"] = "support@example.com"
    answer["Subject"] = msg["Subject"].replace("Re:", "RE:")
    answer["Message-ID"] = "<thanks@example.org>"
    answer["In-Reply-To"] = msg["Message-ID"]
    answer["References"] = f"{msg['References']} {msg['Message-ID']}"
    answer.set_content("Thanks!")
    server.deliver("support@example.com", bytes(answer))
    assert poll(host, box).ingested == 1
    kinds = [(m["kind"], m["status"]) for m in messages(host, ticket_id)]
    assert kinds == [("inbound", None), ("outbound", "sent"), ("inbound", None)]
    assert ticket_row(host, ticket_id)["status"] == "open"


def test_reply_and_close_closes_and_records_activity(host, server):
    _, ticket_id, ada, _ = setup_ticket(host, server)
    client = client_for(host, ada)
    r = post(client, f"/support/tickets/{ticket_id}/reply", text="Done.", action="close")
    assert r.status_code == 302
    assert ticket_row(host, ticket_id)["status"] == "closed"
    with host.app.app_context():
        actions = host.db.session.scalars(sa.select(host.inbox.models.Activity.action)).all()
    assert "replied" in actions and "status" in actions


def test_reply_goes_to_the_reply_to_address(host, server):
    _, ticket_id, ada, _ = setup_ticket(
        host, server, customer_headers={"Reply_To": "Orders <orders@example.org>"})
    post(client_for(host, ada), f"/support/tickets/{ticket_id}/reply", text="Hello", action="send")
    deliver(host)
    assert server.wait_for_sent(1)[0].rcpt_tos == ["orders@example.org"]


def test_a_note_is_never_sent_to_the_customer_nor_quoted(host, server):
    _, ticket_id, ada, ben = setup_ticket(host, server)
    outsider = host.add_user("carol@acme.test", name="Carol King")  # agent, not a member
    client = client_for(host, ada)
    r = post(client, f"/support/tickets/{ticket_id}/note",
             text="SECRET-NOTE: refund approved, @ben please check. @carol too.")
    assert r.status_code == 302
    page = client.get(f"/support/tickets/{ticket_id}").get_data(as_text=True)
    assert "SECRET-NOTE" in page and "internal note" in page
    post(client, f"/support/tickets/{ticket_id}/reply", text="We are on it.", action="send")
    deliver(host)
    sent = server.wait_for_sent(2)
    customer = [s for s in sent if "alice@example.org" in s.rcpt_tos]
    assert len(customer) == 1 and b"SECRET-NOTE" not in customer[0].data
    # Only the mentioned agent who may see the mailbox is notified, by a separate mail.
    notices = [s for s in sent if s not in customer]
    assert [s.rcpt_tos for s in notices] == [["ben@acme.test"]]
    notice = message_from_bytes(notices[0].data, policy=policy.default)
    assert notice["Auto-Submitted"] == "auto-generated" and notice["In-Reply-To"] is None
    assert notice["Message-ID"] not in {f"<{m['message_id']}>" for m in messages(host, ticket_id)}
    assert outsider
    # A note without mentions never enters the outbox.
    post(client, f"/support/tickets/{ticket_id}/note", text="PLAIN-NOTE nobody mentioned")
    assert messages(host, ticket_id)[-1]["status"] is None
    assert deliver(host).sent == 0
    assert all(b"PLAIN-NOTE" not in s.data for s in server.sent)
    assert ticket_row(host, ticket_id)["count"] == 2  # notes are not thread messages


def test_nothing_is_sent_under_testing_unless_forced(host, server):
    _, ticket_id, ada, _ = setup_ticket(host, server)
    post(client_for(host, ada), f"/support/tickets/{ticket_id}/reply", text="Hi", action="send")
    with host.app.app_context():
        stats = deliver_due()
    assert stats.disabled and server.sent == []
    assert deliver(host).sent == 1


def test_the_request_sends_at_once_when_sending_is_enabled(make_host, server):
    host = make_host(config={"SHARED_INBOX_SEND_MAIL": True})
    host.create_tables()
    host.app.testing = False
    _, ticket_id, ada, _ = setup_ticket(host, server)
    client = client_for(host, ada)
    r = post(client, f"/support/tickets/{ticket_id}/reply", text="Right away", action="send")
    assert "Reply sent" in client.get(r.headers["Location"]).get_data(as_text=True)
    assert len(server.wait_for_sent(1)) == 1
    assert messages(host, ticket_id)[-1]["status"] == "sent"


def test_temporary_failure_is_retried_later_and_sent_once(host, server):
    with ScriptedSMTP(data=["451 4.3.0 try later"]) as smtp:
        _, ticket_id, ada, _ = setup_ticket(host, server, smtp_port=smtp.port)
        post(client_for(host, ada), f"/support/tickets/{ticket_id}/reply", text="Hi", action="send")
        now = utcnow()
        assert deliver(host, now=now).retry == 1
        out = messages(host, ticket_id)[-1]
        assert (out["status"], out["attempts"]) == ("retry", 1)
        assert out["error"] == "451 4.3.0 try later"
        assert out["next"] == now + timedelta(minutes=1)
        assert deliver(host, now=now + timedelta(seconds=30)).sent == 0  # not due yet
        assert deliver(host, now=now + timedelta(minutes=1)).sent == 1
        assert deliver(host, now=now + timedelta(hours=2)).sent == 0
        assert len(smtp.accepted) == 1
        out = messages(host, ticket_id)[-1]
        assert (out["status"], out["attempts"]) == ("sent", 2)


def test_unreachable_server_backs_off_then_fails_after_max_attempts(make_host, server):
    host = make_host(config={"SHARED_INBOX_SEND_MAX_ATTEMPTS": 3})
    host.create_tables()
    port = free_port()
    _, ticket_id, ada, _ = setup_ticket(host, server, smtp_port=port)
    post(client_for(host, ada), f"/support/tickets/{ticket_id}/reply", text="Hi", action="send")
    now = utcnow()
    waits = []
    for _ in range(3):
        deliver(host, now=now)
        out = messages(host, ticket_id)[-1]
        assert f"cannot connect to smtp 127.0.0.1:{port}" in out["error"]
        if out["next"]:
            waits.append(out["next"] - now)
            now = out["next"]
    assert waits == [timedelta(minutes=1), timedelta(minutes=2)]
    assert (out["status"], out["attempts"]) == ("failed", 3)


def test_permanent_refusal_fails_at_once_and_shows_on_the_ticket(host, server):
    with ScriptedSMTP(rcpt={"alice@example.org": "550 5.1.1 mailbox unknown"}) as smtp:
        _, ticket_id, ada, _ = setup_ticket(host, server, smtp_port=smtp.port)
        client = client_for(host, ada)
        post(client, f"/support/tickets/{ticket_id}/reply", text="Hi", action="send")
        assert deliver(host).failed == 1
    out = messages(host, ticket_id)[-1]
    assert (out["status"], out["attempts"], out["error"]) == \
        ("failed", 1, "alice@example.org: 550 5.1.1 mailbox unknown")
    page = client.get(f"/support/tickets/{ticket_id}").get_data(as_text=True)
    assert "550 5.1.1 mailbox unknown" in page and "failed" in page


def test_concurrent_deliveries_send_each_message_once(host, server):
    _, ticket_id, ada, _ = setup_ticket(host, server)
    client = client_for(host, ada)
    for i in range(6):
        post(client, f"/support/tickets/{ticket_id}/reply", text=f"reply {i}", action="send")
    results, errors = [], []

    def run():
        try:
            results.append(deliver(host))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r.sent for r in results) == 6
    sent = server.wait_for_sent(6)
    assert len(sent) == 6 and len({s.data for s in sent}) == 6
    assert deliver(host).sent == 0


def test_a_send_interrupted_by_a_crash_is_retried_after_its_lease(host, server):
    _, ticket_id, ada, _ = setup_ticket(host, server)
    post(client_for(host, ada), f"/support/tickets/{ticket_id}/reply", text="Hi", action="send")
    now = utcnow()
    with host.app.app_context():
        from shared_inbox.services.outbox import claim

        assert claim(messages(host, ticket_id)[-1]["id"], now)  # ...and the worker dies
        host.db.session.remove()
    assert deliver(host, now=now + timedelta(seconds=60)).sent == 0  # lease still held
    assert deliver(host, now=now + timedelta(minutes=11)).sent == 1
    assert len(server.wait_for_sent(1)) == 1


def test_empty_or_too_large_input_keeps_what_was_typed(make_host, server):
    host = make_host(config={"SHARED_INBOX_MAX_ATTACHMENT_SIZE": 1000})
    host.create_tables()
    _, ticket_id, ada, _ = setup_ticket(host, server)
    client = client_for(host, ada)
    before = len(messages(host, ticket_id))
    r = post(client, f"/support/tickets/{ticket_id}/reply", text="   ", action="send",
             cc="boss@example.org")
    assert r.status_code == 422
    page = r.get_data(as_text=True)
    assert "Write a reply first: it is empty." in page and 'value="boss@example.org"' in page
    r = post(client, f"/support/tickets/{ticket_id}/reply", text="My long careful answer",
             action="send", attachments=(io.BytesIO(b"x" * 2000), "big.bin"))
    assert r.status_code == 422
    page = r.get_data(as_text=True)
    assert "the limit is" in page and ">My long careful answer</textarea>" in page
    r = post(client, f"/support/tickets/{ticket_id}/note", text="")
    assert r.status_code == 422 and "Write a note first" in r.get_data(as_text=True)
    r = post(client, f"/support/tickets/{ticket_id}/forward", to="not an address", text="FYI keep")
    assert r.status_code == 422 and ">FYI keep</textarea>" in r.get_data(as_text=True)
    assert len(messages(host, ticket_id)) == before


def test_csrf_is_required(host, server):
    _, ticket_id, ada, _ = setup_ticket(host, server)
    client = client_for(host, ada)
    for path in ("reply", "note", "forward"):
        r = client.post(f"/support/tickets/{ticket_id}/{path}",
                        data={"text": "x", "to": "a@example.org"})
        assert r.status_code == 400
    assert len(messages(host, ticket_id)) == 1


def test_an_agent_outside_the_mailbox_gets_404(host, server):
    _, ticket_id, _, _ = setup_ticket(host, server)
    outsider = host.add_user("eve@acme.test", name="Eve")
    client = client_for(host, outsider)
    for path in ("reply", "note", "forward"):
        r = post(client, f"/support/tickets/{ticket_id}/{path}", text="x", to="a@example.org")
        assert r.status_code == 404
    assert len(messages(host, ticket_id)) == 1


def test_forward_reaches_the_other_address_with_the_attachment(host, server):
    box = add_mailbox(host, server, "support@example.com")
    with host.app.app_context():
        mb = host.db.session.get(host.inbox.models.Mailbox, box)
        mb.smtp_host, mb.smtp_port, mb.smtp_security = "127.0.0.1", server.smtp_port, "plain"
        host.db.session.commit()
    admin = host.add_user("boss@acme.test", role="admin", name="Boss")
    incoming = EmailMessage()
    incoming["From"] = "Alice <alice@example.org>"
    incoming["To"] = "support@example.com"
    incoming["Subject"] = "Broken item"
    incoming["Message-ID"] = "<broken@example.org>"
    incoming.set_content("It arrived broken, photo attached.")
    incoming.add_attachment(b"\x89PNG fake", maintype="image", subtype="png", filename="photo.png")
    server.deliver("support@example.com", bytes(incoming))
    poll(host, box)
    with host.app.app_context():
        ticket_id = host.db.session.scalar(sa.select(host.inbox.models.Ticket.id))
    client = client_for(host, admin)
    r = post(client, f"/support/tickets/{ticket_id}/forward", to="warehouse@example.net",
             text="Can you replace this?")
    assert r.status_code == 302
    deliver(host)
    sent = server.wait_for_sent(1)[0]
    assert sent.rcpt_tos == ["warehouse@example.net"]
    msg = message_from_bytes(sent.data, policy=policy.default)
    assert msg["Subject"] == f"Fwd: Broken item [#{ticket_id}]"
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "Can you replace this?" in text and "It arrived broken" in text
    assert "From: Alice <alice@example.org>" in text
    assert [(p.get_filename(), p.get_content()) for p in msg.iter_attachments()] == \
        [("photo.png", b"\x89PNG fake")]
    out = messages(host, ticket_id)[-1]
    assert (out["kind"], out["to"], out["status"]) == ("outbound", [["", "warehouse@example.net"]], "sent")
    with host.app.app_context():
        actions = host.db.session.scalars(sa.select(host.inbox.models.Activity.action)).all()
    assert "forwarded" in actions


def test_a_copy_goes_to_the_sent_folder_and_a_failure_there_does_not_fail_the_send(make_host, server):
    host = make_host(config={"SHARED_INBOX_APPEND_TO_SENT": True})
    host.create_tables()
    _, ticket_id, ada, _ = setup_ticket(host, server)
    client = client_for(host, ada)
    post(client, f"/support/tickets/{ticket_id}/reply", text="Filed too", action="send")
    assert deliver(host).sent == 1
    assert server.message_count("support@example.com", "Sent") == 1
    host.app.config["SHARED_INBOX_SENT_FOLDER"] = "No such folder"
    post(client, f"/support/tickets/{ticket_id}/reply", text="Not filed", action="send")
    assert deliver(host).sent == 1
    assert messages(host, ticket_id)[-1]["status"] == "sent"
    assert len(server.wait_for_sent(2)) == 2


def test_sending_warns_when_the_customer_wrote_since_the_page_was_opened(host, server):
    mail_server = server
    """Collision safety: a reply composed on a stale page is held back, text kept."""
    import re as _re

    from test_poll import add_mailbox as add_box, mail as make_mail, poll as run_poll

    mail_server.deliver("support@example.com", make_mail("Stove leaks", msgid="c1"))
    box = add_box(host, mail_server, "support@example.com")
    run_poll(host, box)
    client, _agent = host.member_client(box, "ada@example.com")
    page = client.get("/support/tickets/1").get_data(as_text=True)
    token = _re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    seen = _re.search(r'name="seen_message_id" value="(\d+)"', page).group(1)
    mail_server.deliver("support@example.com", make_mail(
        "Re: Stove leaks", "Actually it is the valve", msgid="c2", In_Reply_To="<c1@example.org>"))
    run_poll(host, box)
    r = client.post("/support/tickets/1/reply", data={
        "csrf_token": token, "seen_message_id": seen, "text": "Try a new gasket"})
    page = r.get_data(as_text=True)
    assert r.status_code == 422 and "new message(s) arrived" in page
    assert "Try a new gasket" in page and "Actually it is the valve" in page
    seen = _re.search(r'name="seen_message_id" value="(\d+)"', page).group(1)
    r = client.post("/support/tickets/1/reply", data={
        "csrf_token": token, "seen_message_id": seen, "text": "Try a new gasket"})
    assert r.status_code == 302


def test_from_name_with_agent_placeholder_names_whoever_replies(host, server):
    """Per-mailbox From name: "{agent} at Acme Support" is Ada's or Ben's, and a blank SMTP
    user name logs in with the IMAP user name (the dev server offers AUTH)."""
    box, ticket_id, ada, ben = setup_ticket(host, server)
    with host.app.app_context():
        host.db.session.get(host.inbox.models.Mailbox, box).from_name = "{agent} at Acme Support"
        host.db.session.commit()
    for who, text in ((ada, "First answer"), (ben, "Second answer")):
        assert post(client_for(host, who), f"/support/tickets/{ticket_id}/reply", text=text,
                    action="send").status_code == 302
    assert deliver(host).sent == 2
    sent = server.wait_for_sent(2)
    froms = sorted(message_from_bytes(s.data, policy=policy.default)["From"] for s in sent)
    assert froms == ["Ada Lovelace at Acme Support <support@example.com>",
                     "Ben Jones at Acme Support <support@example.com>"]
    assert {s.auth_login for s in sent} == {"support@example.com"}
    body = message_from_bytes(sent[0].data, policy=policy.default).get_body(("plain",))
    assert "-- \nAcme Support\nhttps://acme.example" in body.get_content().replace("\r\n", "\n")


def test_the_sent_copy_can_be_chosen_per_mailbox(host, server):
    """Off by default (Gmail files sent mail itself); one mailbox's setting turns it on."""
    box, ticket_id, ada, _ = setup_ticket(host, server)
    client = client_for(host, ada)
    post(client, f"/support/tickets/{ticket_id}/reply", text="Not filed", action="send")
    assert deliver(host).sent == 1
    assert server.message_count("support@example.com", "Sent") == 0
    with host.app.app_context():
        host.db.session.get(host.inbox.models.Mailbox, box).append_to_sent = True
        host.db.session.commit()
    post(client, f"/support/tickets/{ticket_id}/reply", text="Filed", action="send")
    assert deliver(host).sent == 1
    assert server.message_count("support@example.com", "Sent") == 1
