"""Automation after ingestion: each customer message is automated exactly once, after the mail
itself is safe; a failing step (or a host's signal receiver) never loses the mail; imported
history never triggers anything. And the team-notification outbox delivers over real SMTP."""
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa

from shared_inbox import signals
from shared_inbox.services.automation import process_one, process_pending
from shared_inbox.services.notify import admin_recipients, queue_notification
from shared_inbox.services.outbox import deliver_due
from test_poll import add_mailbox, mail, poll


@pytest.fixture
def heard(host):
    """Every signal the app sends, as (event name, ticket id, message id) tuples."""
    calls = []
    receivers = []
    for name, signal in signals.ALL.items():
        def receiver(sender, _name=name, **kw):
            message = kw.get("message")
            calls.append((_name, kw["ticket"].id, message.id if message is not None else None))
        signal.connect(receiver, sender=host.app)
        receivers.append((signal, receiver))
    yield calls
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def _connected(host, server):
    """support@ connected for new mail only (what arrives later is not imported history)."""
    box = add_mailbox(host, server, "support@example.com", since_days=None)
    poll(host, box)
    return box


def _states(host):
    with host.app.app_context():
        m = host.inbox.models
        return dict(host.db.session.execute(
            sa.select(m.Message.subject, m.Message.automation_state)
            .where(m.Message.kind == "inbound")).all())


def test_a_polled_mail_is_automated_once_and_tells_the_host(host, mail_server, heard):
    box = _connected(host, mail_server)
    mail_server.deliver("support@example.com", mail("Broken kettle", msgid="k1"))
    assert poll(host, box).ingested == 1
    assert _states(host) == {"Broken kettle": "done"}
    assert [name for name, *_ in heard] == ["ticket.created", "message.received"]

    mail_server.deliver("support@example.com", mail("Re: Broken kettle", msgid="k2",
                                                     In_Reply_To="<k1@example.org>"))
    assert poll(host, box).ingested == 1
    assert _states(host)["Re: Broken kettle"] == "done"
    # The reply joined the ticket: received, but no second "created".
    assert [name for name, *_ in heard][2:] == ["message.received"]
    assert heard[0][1] == heard[2][1]
    with host.app.app_context():
        assert process_pending() == []  # nothing left, nothing run twice


def test_imported_history_never_triggers_automation(host, mail_server, heard):
    mail_server.deliver("support@example.com", mail("Old question", msgid="old1"))
    box = add_mailbox(host, mail_server, "support@example.com")
    with host.app.app_context():
        from shared_inbox.services.ingest import ingest

        mailbox = host.db.session.get(host.inbox.models.Mailbox, box)
        ingest(mailbox, mail("Imported thing", msgid="imp1"), imported=True)
        assert process_pending() == []
    assert _states(host)["Imported thing"] == "skipped"
    assert heard == []


def test_a_failing_receiver_marks_the_message_failed_and_keeps_the_mail(host, mail_server):
    box = _connected(host, mail_server)

    def broken(sender, **kw):
        if "explode" in kw["message"].subject:
            raise RuntimeError("the host's CRM is down")

    signals.message_received.connect(broken, sender=host.app)
    try:
        mail_server.deliver("support@example.com", mail("Please explode", msgid="e1"))
        mail_server.deliver("support@example.com", mail("A calm question", msgid="c1"))
        assert poll(host, box).ingested == 2
    finally:
        signals.message_received.disconnect(broken)
    assert _states(host) == {"Please explode": "failed", "A calm question": "done"}
    with host.app.app_context():
        m = host.inbox.models
        activity = host.db.session.scalar(
            sa.select(m.Activity).where(m.Activity.action == "automation_failed"))
        assert "the host's CRM is down" in activity.detail["error"]
        # The mail itself is there, readable, in its ticket.
        ticket = host.db.session.get(m.Ticket, activity.ticket_id)
        assert ticket.subject == "Please explode" and ticket.message_count == 1


def test_a_message_is_claimed_by_one_worker_only(host, mail_server, heard):
    box = add_mailbox(host, mail_server, "support@example.com")
    with host.app.app_context():
        from shared_inbox.services.ingest import ingest

        mailbox = host.db.session.get(host.inbox.models.Mailbox, box)
        message = ingest(mailbox, mail("Twice?", msgid="t1"))
        assert message.automation_state == "new"
        first = process_one(message.id)
        second = process_one(message.id)
    assert first is not None and first.is_new_ticket
    assert second is None
    assert [name for name, *_ in heard] == ["ticket.created", "message.received"]


def test_team_notifications_are_sent_outside_the_customer_thread(host, mail_server):
    box = add_mailbox(host, mail_server, "support@example.com")
    host.app.config["SHARED_INBOX_ADMIN_EMAILS"] = ["boss@acme.test"]
    with host.app.app_context():
        m = host.inbox.models
        mailbox = host.db.session.get(m.Mailbox, box)
        mailbox.smtp_host, mailbox.smtp_port, mailbox.smtp_security = (
            "127.0.0.1", mail_server.smtp_port, "plain")
        mailbox.smtp_username = "support@example.com"
        host.db.session.commit()
        assert admin_recipients() == [["", "boss@acme.test"]]
        queue_notification(admin_recipients(), "Mailbox support paused", "Too many auto-replies.",
                           reason="circuit")
        host.db.session.commit()
        stats = deliver_due(force=True)
        assert stats.sent == 1
        row = host.db.session.scalar(sa.select(m.Notification))
        assert row.send_status == "sent" and row.sent_at is not None
    sent = mail_server.wait_for_sent(1)[0]
    assert sent.rcpt_tos == ["boss@acme.test"]
    msg = message_from_bytes(sent.data, policy=policy.default)
    assert msg["Subject"] == "Mailbox support paused"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["In-Reply-To"] is None and msg["References"] is None
    assert "Too many auto-replies." in msg.get_content()


def test_a_notification_that_cannot_be_sent_waits_for_a_retry(host, mail_server):
    box = add_mailbox(host, mail_server, "support@example.com")
    with host.app.app_context():
        m = host.inbox.models
        mailbox = host.db.session.get(m.Mailbox, box)
        mailbox.smtp_host, mailbox.smtp_port, mailbox.smtp_security = "127.0.0.1", 9, "plain"
        host.db.session.commit()
        queue_notification(["ada@acme.test"], "SLA breached on #1", "Ticket #1 is late.")
        host.db.session.commit()
        stats = deliver_due(force=True)
        row = host.db.session.scalar(sa.select(m.Notification))
        assert stats.retry == 1
        assert row.send_status == "retry" and row.send_error
        assert row.next_attempt_at is not None


def test_agents_actions_send_the_other_signals(host, mail_server, heard):
    """What a host hears when an agent works the ticket in the dashboard: assigned, note,
    reply (once SMTP accepted it) and status, each with the ticket and the acting agent."""
    from test_ticket_actions import as_user

    box = _connected(host, mail_server)
    with host.app.app_context():
        mb = host.db.session.get(host.inbox.models.Mailbox, box)
        mb.smtp_host, mb.smtp_port, mb.smtp_security = "127.0.0.1", mail_server.smtp_port, "plain"
        mb.smtp_username = mb.email_address
        host.db.session.add(host.inbox.models.MailboxMember(mailbox_id=box, user_id=(
            ada := host.add_user("ada@x.test", name="Ada"))))
        host.db.session.commit()
    mail_server.deliver("support@example.com", mail("Broken kettle", msgid="k1"))
    assert poll(host, box).ingested == 1
    tid = heard[0][1]
    client = host.app.test_client()
    tok = as_user(host, client, ada)
    actors = []

    def actor_of(sender, **kw):
        actors.append(kw.get("actor"))
    signals.ticket_assigned.connect(actor_of, sender=host.app)
    try:
        base = f"/support/tickets/{tid}"
        assert client.post(f"{base}/assign", data={"assignee_id": str(ada),
                                                   "csrf_token": tok}).status_code == 302
        assert client.post(f"{base}/note", data={"text": "Checking stock",
                                                 "csrf_token": tok}).status_code == 302
        with host.app.app_context():
            seen = host.db.session.scalar(sa.select(sa.func.max(host.inbox.models.Message.id)))
        assert client.post(f"{base}/reply", data={"text": "A new one is on its way.",
                                                  "seen_message_id": str(seen),
                                                  "csrf_token": tok}).status_code == 302
        assert "reply.sent" not in [name for name, *_ in heard]  # queued, not sent yet
        with host.app.app_context():
            deliver_due(force=True)
        mail_server.wait_for_sent(1)
        assert client.post(f"{base}/status", data={"status": "closed",
                                                   "csrf_token": tok}).status_code == 302
    finally:
        signals.ticket_assigned.disconnect(actor_of)
    names = [name for name, *_ in heard]
    # A reply sets the ticket pending (waiting on the customer) when it is queued.
    assert names[2:] == ["ticket.assigned", "note.added", "ticket.status_changed", "reply.sent",
                         "ticket.status_changed"]
    assert {ticket for _, ticket, _ in heard} == {tid}
    assert [getattr(a, "id", None) for a in actors] == [ada]
