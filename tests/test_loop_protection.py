"""Loop protection: no automatic reply to automatic mail (real auto-replies, bounces and list
mail from the corpus, read in place), to no-reply senders or our own mailboxes; at most N
automatic replies per address per hour; and the circuit breaker that stops a mailbox's
automatic mail and tells the admins once."""
from datetime import datetime, timedelta
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa

from shared_inbox.services.outbox import deliver_due
from test_autoreplies import activities, outbound, receive, setup_mailbox
from test_classify import CORPUS, CORPUS_LIST_MAIL, CORPUS_REPORTS
from test_poll import mail

NOW = datetime(2026, 11, 16, 10, 0)
AUTOMATIC_CORPUS = sorted(CORPUS_REPORTS) + sorted(CORPUS_LIST_MAIL)
ORDINARY_CORPUS = [
    "redmine/mail_handler/ticket_on_given_project.eml",
    "redmine/mail_handler/gmail_with_attachment_iso-8859-1.eml",
    "talon/reply-quotations-share-block.eml",
]


def corpus(relative: str) -> bytes:
    path = CORPUS / relative
    if not path.is_file():
        pytest.skip(f"corpus file {relative} not available")
    return path.read_bytes()


@pytest.fixture
def acking(make_host, mail_server):
    """A host whose support mailbox acknowledges every new ticket; ``config`` overrides."""
    def _make(**config):
        host = make_host(config={"SHARED_INBOX_ADMIN_EMAILS": ["boss@acme.test"], **config})
        host.create_tables()
        box = setup_mailbox(host, mail_server, autoreply_ack_enabled=True)
        return host, box
    return _make


def test_real_bounces_reports_and_list_mail_get_no_auto_reply(acking):
    host, box = acking()
    received = 0
    for n, relative in enumerate(AUTOMATIC_CORPUS):
        message_id, done = receive(host, box, corpus(relative), NOW + timedelta(minutes=n))
        if message_id is None:  # multi_address_bounce2 is the same mail as bounce1
            continue
        received += 1
        assert done == ["acknowledgement withheld"], relative
    assert received >= len(AUTOMATIC_CORPUS) - 1
    assert outbound(host) == []
    withheld = activities(host, "auto_reply_withheld")
    assert len(withheld) == received
    assert all(("bounce" in a.detail["why"] or "automatic or list mail" in a.detail["why"])
               for a in withheld), [a.detail for a in withheld]

    # Ordinary customer mail from the same corpus is acknowledged.
    for n, relative in enumerate(ORDINARY_CORPUS):
        _, done = receive(host, box, corpus(relative), NOW + timedelta(minutes=30 + n))
        assert done == ["acknowledgement"], relative
    assert len(outbound(host)) == len(ORDINARY_CORPUS)


@pytest.mark.parametrize("headers, sender, why", [
    ({"Auto_Submitted": "auto-replied"}, None, "Auto-Submitted"),
    ({"Precedence": "bulk"}, None, "Precedence: bulk"),
    ({"Precedence": "list"}, None, "Precedence: list"),
    ({"Precedence": "junk"}, None, "Precedence: junk"),
    ({"List_Id": "News <news.example.org>"}, None, "List-Id"),
    ({"List_Post": "<mailto:all@example.org>"}, None, "List-Post"),
    ({"X_Auto_Response_Suppress": "OOF, AutoReply"}, None, "X-Auto-Response-Suppress"),
    ({"Return_Path": "<>"}, None, "null Return-Path"),
    ({"X_Autoreply": "yes"}, None, "X-Autoreply"),
    ({}, "noreply@shop.example", "no-reply address"),
    ({}, "do-not-reply@bank.example", "no-reply address"),
    ({}, "orders-noreply@shop.example", "no-reply address"),
    ({}, "MAILER-DAEMON@mx.example.org", "automatic or list mail"),
    ({}, "billing@example.com", "one of our own mailboxes"),
])
def test_no_auto_reply_to_automatic_or_robot_mail(acking, mail_server, headers, sender, why):
    host, box = acking()
    setup_mailbox(host, mail_server, "billing@example.com")
    raw = mail("Question about my order", sender=sender or "alice@example.org", msgid="q1",
               **headers)
    _, done = receive(host, box, raw, NOW)
    assert done == ["acknowledgement withheld"]
    assert outbound(host) == []
    (withheld,) = activities(host, "auto_reply_withheld")
    assert why in withheld.detail["why"], withheld.detail


def test_an_out_of_office_answer_to_our_acknowledgement_is_not_answered(acking, mail_server):
    host, box = acking()
    _, done = receive(host, box, mail("Order question", msgid="o1"), NOW)
    (ack,) = outbound(host)
    # Alice's mail program answers our acknowledgement automatically, in a new thread.
    _, done = receive(host, box, mail("Automatic reply: We received your message", msgid="oof1",
                                      X_Auto_Response_Suppress="All"), NOW + timedelta(minutes=1))
    assert done == ["acknowledgement withheld"]
    assert len(outbound(host)) == 1


def test_at_most_n_automatic_replies_per_address_per_hour(acking):
    host, box = acking(SHARED_INBOX_AUTOREPLY_SENDER_LIMIT=3)
    dones = [receive(host, box, mail(f"Question {n}", msgid=f"n{n}"), NOW + timedelta(minutes=n))[1]
             for n in range(5)]
    assert dones == [["acknowledgement"]] * 3 + [["acknowledgement withheld"]] * 2
    assert "already got 3 automatic replies" in activities(host, "auto_reply_withheld")[0].detail["why"]
    # Another customer is not affected; an hour after the first one, Alice is answered again.
    assert receive(host, box, mail("Other", sender="bob@example.org", msgid="b1"),
                   NOW + timedelta(minutes=10))[1] == ["acknowledgement"]
    assert receive(host, box, mail("Later", msgid="later"),
                   NOW + timedelta(minutes=61))[1] == ["acknowledgement"]


def test_circuit_breaker_stops_the_mailbox_and_tells_the_admins_once(acking, mail_server):
    host, box = acking(SHARED_INBOX_AUTOREPLY_MAILBOX_LIMIT=3)
    dones = [receive(host, box, mail(f"Flood {n}", sender=f"c{n}@example.org", msgid=f"f{n}"),
                     NOW + timedelta(minutes=n))[1] for n in range(6)]
    assert dones == [["acknowledgement"]] * 3 + [["acknowledgement withheld"]] * 3
    assert all("circuit breaker" in a.detail["why"]
               for a in activities(host, "auto_reply_withheld"))
    with host.app.app_context():
        m = host.m
        notes = host.db.session.scalars(sa.select(m.Notification)).all()
        assert [(n.reason, n.to) for n in notes] == [("autoreply_breaker", [["", "boss@acme.test"]])]
        assert host.db.session.get(m.Mailbox, box).autoreply_breaker_at == NOW + timedelta(minutes=3)
        stats = deliver_due(force=True)
        assert stats.sent == 4  # three acknowledgements and the admins' notification
    admin_mail = [s for s in mail_server.wait_for_sent(4) if s.rcpt_tos == ["boss@acme.test"]]
    msg = message_from_bytes(admin_mail[0].data, policy=policy.default)
    assert "Automatic replies of Support stopped" in msg["Subject"]

    with host.app.app_context():
        from shared_inbox.services.autoreplies import breaker_status

        status = breaker_status(host.db.session.get(host.m.Mailbox, box),
                                now=NOW + timedelta(minutes=10))
        assert status["open"] and status["count"] == 3 and status["since"] == NOW + timedelta(minutes=3)

    # An hour after the flood the mailbox answers again; a new trip tells the admins again.
    later = NOW + timedelta(minutes=63)
    assert receive(host, box, mail("Calm", sender="d@example.org", msgid="calm"), later)[1] == \
        ["acknowledgement"]
    with host.app.app_context():
        assert host.db.session.scalar(sa.select(sa.func.count()).select_from(host.m.Notification)) == 1


def test_settings_page_shows_the_open_circuit_breaker(acking):
    host, box = acking(SHARED_INBOX_AUTOREPLY_MAILBOX_LIMIT=1)
    from shared_inbox.models import utcnow

    now = utcnow()
    receive(host, box, mail("One", sender="a1@example.org", msgid="x1"), now)
    receive(host, box, mail("Two", sender="a2@example.org", msgid="x2"), now)
    admin = host.add_user("admin@acme.test", role="admin")
    client = host.app.test_client()
    host.login(client, admin)
    page = client.get(f"/support/settings/mailboxes/{box}/auto-replies").get_data(as_text=True)
    assert "Circuit breaker open" in page and "paused since" in page
