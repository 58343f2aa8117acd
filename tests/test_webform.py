"""The contact form end to end: a visitor's submission -> a ticket in the right mailbox -> a
confirmation received by the real SMTP capture -> the customer's answer, polled over IMAP,
joins the same ticket. And the protections: CSRF, honeypot, per-IP rate limit, size limits,
errors beside the field with the input kept."""
import io
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa
from flask import render_template_string

from shared_inbox.csrf import SESSION_KEY
from shared_inbox.models import utcnow
from shared_inbox.services.outbox import deliver_due
from test_poll import add_mailbox, mail, poll

CSRF = "webform-test-token"


def visitor(host, ip="203.0.113.7"):
    client = host.app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    with client.session_transaction() as sess:
        sess[SESSION_KEY] = CSRF
    return client


def submit(client, url="/help/contact", files=(), **overrides):
    data = {"csrf_token": CSRF, "name": "Alice Example", "email": "alice@example.org",
            "subject": "Where is my order?", "message": "Order 42 has not arrived.\nThanks!",
            "website": ""}
    data.update(overrides)
    if files:
        data["attachments"] = list(files)
    return client.post(url, data=data, content_type="multipart/form-data")


def smtp_mailbox(host, server, address):
    box = add_mailbox(host, server, address)
    with host.app.app_context():
        mb = host.db.session.get(host.inbox.models.Mailbox, box)
        mb.smtp_host, mb.smtp_port, mb.smtp_security = "127.0.0.1", server.smtp_port, "plain"
        host.db.session.commit()
    return box


def rows(host, model, *where):
    with host.app.app_context():
        out = host.db.session.scalars(sa.select(model).where(*where).order_by(model.id)).all()
        host.db.session.expunge_all()
        return out


def field_error(page, name):
    marker = f'id="si-{name}-error">'
    return page.split(marker, 1)[1].split("<", 1)[0] if marker in page else None


@pytest.fixture
def webhost(make_host):
    def _make(**config):
        h = make_host(config=config)
        h.create_tables()
        return h
    return _make


def test_submission_becomes_a_ticket_and_the_threaded_confirmation_is_mailed(webhost, mail_server):
    host = webhost()
    m = host.m
    box = smtp_mailbox(host, mail_server, "support@example.com")
    poll(host, box)  # the first poll only notes where the mailbox stands
    client = visitor(host)
    page = client.get("/help/contact").get_data(as_text=True)
    assert 'name="csrf_token"' in page and 'name="website"' in page
    assert 'enctype="multipart/form-data"' in page

    r = submit(client, files=[(io.BytesIO(b"%PDF-1.4 receipt"), "receipt.pdf")])
    assert r.status_code == 302 and r.headers["Location"].endswith("/help/contact/thanks")
    thanks = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "ticket #1" in thanks and "alice@example.org" in thanks

    (ticket,) = rows(host, m.Ticket)
    assert (ticket.mailbox_id, ticket.subject, ticket.status) == (box, "Where is my order?", "open")
    inbound, confirmation = rows(host, m.Message, m.Message.ticket_id == ticket.id)
    assert inbound.kind == "inbound" and inbound.from_email == "alice@example.org"
    assert inbound.headers["_source"] == "webform" and inbound.message_id
    assert inbound.automation_state == "done"  # automated like mail
    with host.app.app_context():
        files = [a.filename for a in host.db.session.get(m.Message, inbound.id).attachments]
    assert files == ["receipt.pdf"]
    assert confirmation.kind == "outbound" and confirmation.send_status == "queued"
    assert confirmation.headers["auto-submitted"] == "auto-replied"
    actions = [a.action for a in rows(host, m.Activity, m.Activity.ticket_id == ticket.id)]
    assert "auto_reply_sent" in actions

    with host.app.app_context():
        assert deliver_due(force=True).sent == 1
    sent = mail_server.wait_for_sent(1)[0]
    assert sent.rcpt_tos == ["alice@example.org"]
    msg = message_from_bytes(sent.data, policy=policy.default)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert f"[#{ticket.id}]" in msg["Subject"]
    assert msg["In-Reply-To"] == f"<{inbound.message_id}>"
    assert msg["Message-ID"] == f"<{confirmation.message_id}>"
    assert "Order 42 has not arrived." in msg.get_body(("plain",)).get_content()

    # The team sees it like mail: the message, its file and the confirmation.
    admin = host.add_user("admin@acme.test", role="admin")
    agent = host.app.test_client()
    host.login(agent, admin)
    page = agent.get(f"/support/tickets/{ticket.id}").get_data(as_text=True)
    assert "Order 42 has not arrived." in page and "receipt.pdf" in page
    assert "Thank you for contacting" in page or "thank you for contacting" in page

    # The customer answers the confirmation from their mail program; it joins the ticket.
    mail_server.deliver("support@example.com", mail(
        f"Re: {msg['Subject']}", body="It is order 42, the blue one.", msgid="answer1",
        In_Reply_To=msg["Message-ID"], References=msg["Message-ID"]))
    assert poll(host, box).ingested == 1
    assert len(rows(host, m.Ticket)) == 1
    messages = rows(host, m.Message, m.Message.ticket_id == ticket.id)
    assert [x.kind for x in messages] == ["inbound", "outbound", "inbound"]
    assert messages[-1].body_text.startswith("It is order 42")
    assert messages[-1].automation_state == "done" and not messages[-1].is_imported
    # Only the form's confirmation went out: no second acknowledgement.
    assert len(mail_server.sent) == 1


def test_the_form_of_a_slug_files_into_its_mailbox_and_unknown_slugs_are_404(
        webhost, mail_server):
    host = webhost(SHARED_INBOX_WEBFORM_MAILBOXES={"sales": "sales@example.com"})
    m = host.m
    smtp_mailbox(host, mail_server, "support@example.com")
    sales = smtp_mailbox(host, mail_server, "sales@example.com")
    client = visitor(host)
    assert "Contact Sales" in client.get("/help/contact/sales").get_data(as_text=True)
    assert client.get("/help/contact/billing").status_code == 404
    assert submit(client, "/help/contact/billing").status_code == 404
    assert submit(client, "/help/contact/sales", subject="Bulk order").status_code == 302
    (ticket,) = rows(host, m.Ticket)
    assert ticket.mailbox_id == sales


def test_the_default_mailbox_comes_from_the_config(webhost, mail_server):
    host = webhost(SHARED_INBOX_WEBFORM_MAILBOX="billing@example.com")
    m = host.m
    smtp_mailbox(host, mail_server, "support@example.com")
    billing = smtp_mailbox(host, mail_server, "billing@example.com")
    assert submit(visitor(host)).status_code == 302
    assert [t.mailbox_id for t in rows(host, m.Ticket)] == [billing]


def test_without_a_valid_csrf_token_nothing_is_created_and_the_text_is_kept(
        webhost, mail_server):
    host = webhost()
    smtp_mailbox(host, mail_server, "support@example.com")
    client = visitor(host)
    assert submit(client, csrf_token="").status_code == 400
    r = submit(client, csrf_token="forged", message="My long story about order 42")
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and "The form expired or did not come from this site" in page
    assert "My long story about order 42" in page
    assert f'value="{CSRF}"' in page  # a valid token to send it again with
    assert rows(host, host.m.Ticket) == []
    # Another site's page cannot post in the visitor's name: no session, no token.
    stranger = host.app.test_client()
    assert submit(stranger, csrf_token="").status_code == 400
    assert rows(host, host.m.Ticket) == []


def test_the_honeypot_looks_like_success_but_stores_nothing(webhost, mail_server):
    host = webhost()
    smtp_mailbox(host, mail_server, "support@example.com")
    client = visitor(host)
    r = submit(client, website="http://cheap-pills.example")
    assert r.status_code == 302
    assert "We received your message" in client.get(r.headers["Location"]).get_data(as_text=True)
    m = host.m
    assert rows(host, m.Ticket) == [] and rows(host, m.Message) == []


def test_rate_limit_per_ip_is_kept_in_the_database(webhost, mail_server):
    host = webhost(SHARED_INBOX_WEBFORM_RATE_LIMIT=2)
    m = host.m
    smtp_mailbox(host, mail_server, "support@example.com")
    assert submit(visitor(host)).status_code == 302
    assert submit(visitor(host), subject="Second").status_code == 302
    # A new session (another browser, another web worker) from the same address is refused,
    # with what was typed still in the form.
    r = submit(visitor(host), subject="Third try")
    page = r.get_data(as_text=True)
    assert r.status_code == 429 and "several messages in a short time" in page
    assert 'value="Third try"' in page
    # Another address may still write.
    assert submit(visitor(host, ip="198.51.100.9"), subject="Other").status_code == 302
    assert len(rows(host, m.Ticket)) == 3
    # An hour later the first address may write again.
    from shared_inbox.services.webform import claim_slot, rate_limited

    with host.app.app_context():
        assert rate_limited("203.0.113.7")
        assert not rate_limited("203.0.113.7", now=utcnow() + timedelta(minutes=61))
        # Two workers racing for the last slot: the hit is counted after it is committed,
        # so the second claim is refused and leaves no trace.
        later = utcnow() + timedelta(hours=3)
        assert claim_slot("192.0.2.1", later) and claim_slot("192.0.2.1", later)
        assert not claim_slot("192.0.2.1", later)
        assert host.db.session.scalar(sa.select(sa.func.count()).select_from(m.WebformHit)
                                      .where(m.WebformHit.ip == "192.0.2.1")) == 2


def test_a_form_cannot_rename_a_known_customer(webhost, mail_server):
    host = webhost()
    m = host.m
    smtp_mailbox(host, mail_server, "support@example.com")
    assert submit(visitor(host), name="Alice Real").status_code == 302
    assert submit(visitor(host), name="Someone Else", subject="Other").status_code == 302
    (customer,) = rows(host, m.Customer)
    assert customer.name == "Alice Real"
    assert [msg.from_name for msg in rows(host, m.Message, m.Message.kind == "inbound")] == \
        ["Alice Real", "Someone Else"]


def test_errors_beside_the_field_with_the_input_kept(webhost, mail_server):
    host = webhost()
    smtp_mailbox(host, mail_server, "support@example.com")
    r = submit(visitor(host), email="not-an-address", name="Ada <b>Byron</b>", subject="")
    page = r.get_data(as_text=True)
    assert r.status_code == 422
    assert field_error(page, "email") == "Enter an email address like support@example.com."
    assert field_error(page, "subject") == "Subject is required."
    assert field_error(page, "name") is None
    assert 'value="not-an-address"' in page
    assert 'value="Ada &lt;b&gt;Byron&lt;/b&gt;"' in page  # kept, and escaped
    assert "Order 42 has not arrived." in page
    assert rows(host, host.m.Ticket) == []


def test_size_limits_of_the_text_and_the_files(webhost, mail_server):
    host = webhost(SHARED_INBOX_WEBFORM_MAX_TEXT=100, SHARED_INBOX_WEBFORM_MAX_UPLOAD_SIZE=1000,
                   SHARED_INBOX_WEBFORM_MAX_FILES=2)
    smtp_mailbox(host, mail_server, "support@example.com")
    client = visitor(host)
    r = submit(client, message="x" * 101)
    page = r.get_data(as_text=True)
    assert r.status_code == 422
    assert field_error(page, "message").startswith("Your message is 101 characters long")
    assert "x" * 101 in page  # nothing lost

    r = submit(client, files=[(io.BytesIO(b"a" * 600), "a.bin"), (io.BytesIO(b"b" * 600), "b.bin")])
    assert r.status_code == 422
    assert "larger than" in field_error(r.get_data(as_text=True), "attachments")

    r = submit(client, files=[(io.BytesIO(b"a"), f"{n}.txt") for n in range(3)])
    assert field_error(r.get_data(as_text=True), "attachments") == "Attach at most 2 files."
    assert rows(host, host.m.Ticket) == []

    assert submit(client, files=[(io.BytesIO(b"a" * 900), "ok.bin")]).status_code == 302


def test_no_confirmation_to_a_noreply_address_but_the_ticket_is_kept(webhost, mail_server):
    host = webhost()
    m = host.m
    smtp_mailbox(host, mail_server, "support@example.com")
    assert submit(visitor(host), email="no-reply@shop.example").status_code == 302
    (ticket,) = rows(host, m.Ticket)
    assert [x.kind for x in rows(host, m.Message)] == ["inbound"]
    (withheld,) = rows(host, m.Activity, m.Activity.action == "auto_reply_withheld")
    assert "no-reply address" in withheld.detail["why"]


def test_the_macro_embeds_the_form_in_a_host_page(webhost, mail_server):
    host = webhost()
    smtp_mailbox(host, mail_server, "support@example.com")

    @host.app.route("/contact-us")
    def contact_us():
        return render_template_string(
            '{% from "shared_inbox/_webform_macros.html" import contact_form with context %}'
            "<h1>Our shop</h1>{{ contact_form(button='Send to Acme') }}")

    client = host.app.test_client()
    page = client.get("/contact-us").get_data(as_text=True)
    assert 'action="/help/contact"' in page and "Send to Acme" in page
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post("/help/contact", data={
        "csrf_token": token, "name": "Bob", "email": "bob@example.org", "subject": "Hi",
        "message": "Hello there", "website": ""})
    assert r.status_code == 302
    assert len(rows(host, host.m.Ticket)) == 1
    # The honeypot stays out of sight even on a page without the inbox's stylesheet.
    honeypot = page.split('name="website"')[0].rsplit("<div", 1)[1]
    assert " hidden " in honeypot and 'aria-hidden="true"' in honeypot


def test_the_example_shops_contact_pages_look_like_the_shop(tmp_path):
    """examples/shop embeds the form in its own page (with the inbox's stylesheet) and its
    layout is the base of the form's error and thank-you pages."""
    from examples.shop import create_app, inbox
    from examples.shop.models import db

    app = create_app({"TESTING": True,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'shop.db'}",
                      "SHARED_INBOX_ATTACHMENT_DIR": str(tmp_path / "files")})
    with app.app_context():
        inbox.create_all()
        db.session.add(inbox.models.Mailbox(name="Support", email_address="support@acme.test"))
        db.session.commit()
    try:
        client = app.test_client()
        page = client.get("/contact").get_data(as_text=True)
        assert "Acme Outdoor" in page and "Send to Acme support" in page
        assert '<link rel="stylesheet" href="/support/static/inbox.css">' in page
        with client.get("/support/static/inbox.css") as css:
            assert css.status_code == 200 and b".si-webform" in css.get_data()
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        r = client.post("/help/contact", data={"csrf_token": token, "name": "Ty",
                                               "email": "ty@example.org", "subject": "Hi",
                                               "message": "", "website": ""})
        page = r.get_data(as_text=True)
        assert r.status_code == 422
        assert "Acme Outdoor" in page and 'href="/contact"' in page  # the shop's header
        assert field_error(page, "message") == "Your message is required."
        assert 'value="ty@example.org"' in page
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
