"""Auto-replies per mailbox: the acknowledgement of a new ticket (mailed for real, threaded,
``Auto-Submitted``), the out-of-hours reply instead of it when the mailbox is closed, the
settings page with its preview, and the ``send_automatic_reply`` gate used by rules."""
from datetime import datetime
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa

from shared_inbox.csrf import SESSION_KEY
from shared_inbox.services.automation import process_one
from shared_inbox.services.ingest import ingest
from shared_inbox.services.outbox import deliver_due
from test_poll import add_mailbox, mail, poll

CSRF = "autoreply-test-token"
MONDAY_10 = datetime(2026, 11, 16, 10, 0)  # a Monday, 10:00 UTC
SATURDAY_10 = datetime(2026, 11, 21, 10, 0)


def setup_mailbox(host, server, address="support@example.com", **settings):
    """A mailbox on the dev server, sending through its SMTP capture, with ``settings``."""
    box = add_mailbox(host, server, address)
    with host.app.app_context():
        mb = host.db.session.get(host.m.Mailbox, box)
        mb.smtp_host, mb.smtp_port, mb.smtp_security = "127.0.0.1", server.smtp_port, "plain"
        for key, value in settings.items():
            setattr(mb, key, value)
        host.db.session.commit()
    return box


def receive(host, box, raw, now):
    """Ingest ``raw`` (real parsing and classification) and automate it at ``now``;
    ``(None, None)`` when the same mail was ingested before."""
    with host.app.app_context():
        mailbox = host.db.session.get(host.m.Mailbox, box)
        message = ingest(mailbox, raw)
        if message is None:
            return None, None
        message_id = message.id
        event = process_one(message_id, now=now)
        done = list(event.done) if event is not None else None
        host.db.session.remove()
        return message_id, done


def outbound(host, *where):
    with host.app.app_context():
        m = host.m
        out = host.db.session.scalars(sa.select(m.Message).where(
            m.Message.kind == "outbound", *where).order_by(m.Message.id)).all()
        host.db.session.expunge_all()
        return out


def activities(host, action):
    with host.app.app_context():
        m = host.m
        out = host.db.session.scalars(sa.select(m.Activity).where(m.Activity.action == action)
                                      .order_by(m.Activity.id)).all()
        host.db.session.expunge_all()
        return out


def test_acknowledgement_is_mailed_threaded_and_marked_automatic(host, mail_server):
    box = setup_mailbox(host, mail_server, autoreply_ack_enabled=True,
                        autoreply_ack_subject="Thanks, {{ customer.first_name }}",
                        autoreply_ack_text="Hi {{ customer.first_name }}, your ticket is "
                        "#{{ ticket.number }} ({{ ticket.subject }}).")
    poll(host, box)  # the first poll only notes where the mailbox stands
    mail_server.deliver("support@example.com", mail("Where is my order", msgid="order42"))
    assert poll(host, box).ingested == 1  # polling runs automation at once
    (ack,) = outbound(host)
    assert ack.headers["auto-submitted"] == "auto-replied"
    with host.app.app_context():
        assert deliver_due(force=True).sent == 1
    sent = mail_server.wait_for_sent(1)[0]
    assert sent.rcpt_tos == ["alice@example.org"]
    msg = message_from_bytes(sent.data, policy=policy.default)
    assert msg["Subject"] == f"Thanks, Alice [#{ack.ticket_id}]"
    assert msg["Auto-Submitted"] == "auto-replied" and msg["X-Auto-Response-Suppress"] == "All"
    assert msg["In-Reply-To"] == "<order42@example.org>"
    assert f"your ticket is #{ack.ticket_id} (Where is my order)." in \
        msg.get_body(("plain",)).get_content()
    with host.app.app_context():
        ticket = host.db.session.get(host.m.Ticket, ack.ticket_id)
        # Not an agent's answer: the customer is still waiting, no first response yet.
        assert ticket.status == "open" and ticket.first_response_at is None and ticket.is_waiting
        assert ticket.message_count == 2

    # The customer's follow-up in the same thread gets no second acknowledgement.
    mail_server.deliver("support@example.com", mail(
        "Re: Where is my order", msgid="order42b", In_Reply_To=msg["Message-ID"]))
    assert poll(host, box).ingested == 1
    assert len(outbound(host)) == 1


def test_out_of_hours_reply_replaces_the_acknowledgement_when_closed(host, mail_server):
    hours = {str(day): [["09:00", "17:00"]] for day in range(5)}
    box = setup_mailbox(host, mail_server, autoreply_ack_enabled=True,
                        autoreply_ooh_enabled=True, autoreply_ooh_text="We are closed now.",
                        business_hours=hours, timezone="UTC")
    _, done = receive(host, box, mail("Weekend question", msgid="w1"), SATURDAY_10)
    assert done == ["out_of_hours"]
    _, done = receive(host, box, mail("Weekday question", msgid="d1", sender="bob@example.org"),
                      MONDAY_10)
    assert done == ["acknowledgement"]
    weekend, weekday = outbound(host)
    assert weekend.body_text.startswith("We are closed now.")
    assert "We received your message and will answer" in weekday.body_text


def test_without_business_hours_the_mailbox_is_open(host, mail_server):
    box = setup_mailbox(host, mail_server, autoreply_ooh_enabled=True)
    _, done = receive(host, box, mail("Saturday", msgid="s1"), SATURDAY_10)
    assert done == []  # open (no hours), and no acknowledgement is enabled
    assert outbound(host) == []


def test_spam_status_or_a_rule_suppresses_the_acknowledgement(host, mail_server):
    box = setup_mailbox(host, mail_server, autoreply_ack_enabled=True)
    with host.app.app_context():
        message = ingest(host.db.session.get(host.m.Mailbox, box), mail("Cheap pills", msgid="sp"))
        message.ticket.status = "spam"
        host.db.session.commit()
        event = process_one(message.id, now=MONDAY_10)
        assert event.done == ["acknowledgement withheld"]
    assert outbound(host) == []
    (withheld,) = activities(host, "auto_reply_withheld")
    assert "no automatic reply" in withheld.detail["why"]


def test_send_automatic_reply_is_the_gate_for_rules(host, mail_server):
    from shared_inbox.services.autoreplies import send_automatic_reply

    box = setup_mailbox(host, mail_server)
    message_id, _ = receive(host, box, mail("Refund", msgid="r1"), MONDAY_10)
    with host.app.app_context():
        m = host.m
        message = host.db.session.get(m.Message, message_id)
        reply = send_automatic_reply(message.ticket, message, "Your refund", "We refund you.",
                                     reason="rule:refunds", now=MONDAY_10)
        assert reply.subject == f"Your refund [#{message.ticket_id}]"
        assert reply.in_reply_to == "r1@example.org" and reply.to == [["Alice", "alice@example.org"]]
        assert reply.headers["auto-submitted"] == "auto-replied"
        host.db.session.commit()
    (sent,) = activities(host, "auto_reply_sent")
    assert sent.detail["reason"] == "rule:refunds" and sent.detail["to"] == "alice@example.org"


def test_no_acknowledgement_after_a_rule_already_answered(host, mail_server):
    from shared_inbox.services import autoreplies
    from shared_inbox.services.automation import InboundEvent

    box = setup_mailbox(host, mail_server, autoreply_ack_enabled=True)
    with host.app.app_context():
        message = ingest(host.db.session.get(host.m.Mailbox, box), mail("Returns", msgid="ret"))
        ticket = message.ticket
        # What the rules step does before this one: a saved reply through the same gate.
        autoreplies.send_automatic_reply(ticket, message, None, "How to return an item: ...",
                                         reason="rule returns", now=MONDAY_10)
        event = InboundEvent(message=message, ticket=ticket, mailbox=ticket.mailbox,
                             customer=ticket.customer, is_new_ticket=True, now=MONDAY_10)
        autoreplies.on_inbound(event)
        assert event.done == ["acknowledgement skipped: already answered by a rule"]
        host.db.session.commit()
    assert [o.body_text.split(":")[0] for o in outbound(host)] == ["How to return an item"]


# -- the settings page -------------------------------------------------------------------------
@pytest.fixture
def admin_client(host):
    admin = host.add_user("admin@acme.test", role="admin")
    client = host.app.test_client()
    host.login(client, admin)
    with client.session_transaction() as sess:
        sess[SESSION_KEY] = CSRF
    return client


def field_error(page, name):
    marker = f'id="si-{name}-error">'
    return page.split(marker, 1)[1].split("<", 1)[0] if marker in page else None


def test_settings_page_saves_previews_and_reports_errors_beside_the_field(
        host, mail_server, admin_client):
    box = setup_mailbox(host, mail_server)
    url = f"/support/settings/mailboxes/{box}/auto-replies"
    assert url in admin_client.get("/support/settings/").get_data(as_text=True)
    page = admin_client.get(url).get_data(as_text=True)
    assert "We received your message" in page and "Preview" in page
    assert "0 of at most 100 automatic mails" in page

    data = {"csrf_token": CSRF, "ack_enabled": "1", "ack_subject": "Got it: {{ ticket.subject }}",
            "ack_text": "Dear {{ customer.first_name }}, ticket #{{ ticket.number }}.",
            "ooh_subject": "", "ooh_text": "", "action": "preview"}
    page = admin_client.post(url, data=data).get_data(as_text=True)
    assert "Got it: Where is my order? [#1234]" in page
    assert "Dear Alice, ticket #1234." in page
    with host.app.app_context():  # a preview saves nothing
        assert not host.db.session.get(host.m.Mailbox, box).autoreply_ack_enabled

    bad = dict(data, ack_text="{% for x in range(9) %}loop{% endfor %}", action="save")
    r = admin_client.post(url, data=bad)
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and field_error(page, "ack_text")
    assert "{% for x in range(9) %}loop{% endfor %}" in page  # input kept
    r = admin_client.post(url, data=dict(data, ack_text="", action="save"))
    assert field_error(r.get_data(as_text=True), "ack_text") == \
        "Write the text of the reply, or turn it off."

    r = admin_client.post(url, data=dict(data, action="save"))
    assert r.status_code == 302
    with host.app.app_context():
        mb = host.db.session.get(host.m.Mailbox, box)
        assert mb.autoreply_ack_enabled and not mb.autoreply_ooh_enabled
        assert mb.autoreply_ack_text == "Dear {{ customer.first_name }}, ticket #{{ ticket.number }}."
    _, done = receive(host, box, mail("Hello there", msgid="h1"), MONDAY_10)
    assert done == ["acknowledgement"]
    (ack,) = outbound(host)
    assert ack.body_text.startswith(f"Dear Alice, ticket #{ack.ticket_id}.")
    assert ack.subject == f"Got it: Hello there [#{ack.ticket_id}]"


def test_settings_page_is_for_admins_only_and_needs_csrf(host, mail_server, admin_client):
    box = setup_mailbox(host, mail_server)
    url = f"/support/settings/mailboxes/{box}/auto-replies"
    agent = host.add_user("ada@acme.test", role="agent")
    client = host.app.test_client()
    host.login(client, agent)
    with client.session_transaction() as sess:
        sess[SESSION_KEY] = "agent-token"
    assert client.get(url).status_code == 403
    assert client.post(url, data={"csrf_token": "agent-token", "ack_enabled": "1",
                                  "ack_text": "x"}).status_code == 403
    assert admin_client.post(url, data={"ack_enabled": "1", "ack_text": "x"}).status_code == 400
    assert admin_client.get("/support/settings/mailboxes/999/auto-replies").status_code == 404
    with host.app.app_context():
        assert not host.db.session.get(host.m.Mailbox, box).autoreply_ack_enabled
