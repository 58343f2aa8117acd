"""Who sees what: anonymous, non-agents, agents outside and inside a mailbox, admins."""
import sqlalchemy as sa


def _ticket(host, mailbox_address: str, subject: str):
    """A ticket with one inbound message and one attachment in the given mailbox."""
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        mailbox = session.scalar(sa.select(m.Mailbox).where(m.Mailbox.email_address == mailbox_address))
        if mailbox is None:
            mailbox = m.Mailbox(name=mailbox_address.split("@")[0], email_address=mailbox_address)
            session.add(mailbox)
            session.flush()
        customer = m.Customer(email=f"c-{subject}@example.org".replace(" ", "-"), name="Cust")
        ticket = m.Ticket(mailbox=mailbox, customer=customer, subject=subject, snippet=subject)
        session.add(ticket)
        session.flush()
        key = host.inbox.models and host.app.extensions["shared_inbox"].storage.put(
            b"%PDF-1.4 secret invoice", kind="att")
        msg = m.Message(ticket=ticket, mailbox_id=mailbox.id, kind="inbound", body_text=subject,
                        raw_key=host.app.extensions["shared_inbox"].storage.put(
                            b"Subject: x\r\n\r\nbody", kind="raw"))
        msg.attachments.append(m.Attachment(filename="invoice.pdf", content_type="application/pdf",
                                            size=23, storage_key=key))
        session.add(msg)
        session.commit()
        return mailbox.id, ticket.id, msg.id, msg.attachments[0].id


def _member(host, mailbox_id, user_id):
    with host.app.app_context():
        host.db.session.add(host.inbox.models.MailboxMember(mailbox_id=mailbox_id, user_id=user_id))
        host.db.session.commit()


def test_anonymous_goes_to_the_host_login_view(host, client):
    r = client.get("/support/")
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/login?next=")


def test_logged_in_non_agent_gets_403(host, client):
    uid = host.add_user("customer@x.test", role="customer")
    host.login(client, uid)
    assert client.get("/support/").status_code == 403


def test_agent_sees_only_tickets_of_their_mailboxes(host, client):
    support, t_support, msg_support, att_support = _ticket(host, "support@x.test", "Tent pole broke")
    billing, t_billing, msg_billing, att_billing = _ticket(host, "billing@x.test", "Refund for 1042")
    agent = host.add_user("ada@x.test")
    _member(host, support, agent)
    host.login(client, agent)

    page = client.get("/support/").get_data(as_text=True)
    assert "Tent pole broke" in page and "Refund for 1042" not in page
    page = client.get(f"/support/?mailbox={billing}").get_data(as_text=True)
    assert "Refund for 1042" not in page

    assert client.get(f"/support/tickets/{t_support}").status_code == 200
    # Outside their mailboxes: not found, as if it did not exist.
    assert client.get(f"/support/tickets/{t_billing}").status_code == 404
    assert client.get(f"/support/attachments/{att_billing}").status_code == 404
    assert client.get(f"/support/messages/{msg_billing}/original").status_code == 404
    r = client.get(f"/support/attachments/{att_support}")
    assert r.status_code == 200 and r.data == b"%PDF-1.4 secret invoice"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Disposition"].startswith("attachment")
    # Changing the status of a ticket outside their mailboxes is refused too.
    token_page = client.get(f"/support/tickets/{t_support}").get_data(as_text=True)
    token = token_page.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post(f"/support/tickets/{t_billing}/status", data={"status": "closed", "csrf_token": token})
    assert r.status_code == 404


def test_agent_without_mailboxes_sees_nothing(host, client):
    _ticket(host, "support@x.test", "Hello")
    host.login(client, host.add_user("new@x.test"))
    page = client.get("/support/").get_data(as_text=True)
    assert "Hello" not in page and "not a member of any mailbox" in page


def test_admin_sees_every_mailbox_and_settings(host, client):
    _ticket(host, "support@x.test", "Tent pole broke")
    _ticket(host, "billing@x.test", "Refund for 1042")
    host.login(client, host.add_user("boss@x.test", role="admin"))
    page = client.get("/support/").get_data(as_text=True)
    assert "Tent pole broke" in page and "Refund for 1042" in page
    assert client.get("/support/settings/").status_code == 200


def test_settings_are_for_admins_only(host, client):
    mailbox, *_ = _ticket(host, "support@x.test", "x")
    agent = host.add_user("ada@x.test")
    host.login(client, agent)
    assert client.get("/support/settings/").status_code == 403
    page = client.get("/support/").get_data(as_text=True)
    assert "/support/settings/" not in page


def test_admin_adds_a_member_with_csrf_and_the_agent_then_sees_the_mailbox(host, client):
    mailbox, ticket, *_ = _ticket(host, "support@x.test", "Where is my order")
    agent = host.add_user("ada@x.test")
    admin = host.add_user("boss@x.test", role="admin")
    host.login(client, admin)
    # Without the token the form is refused and nothing changes.
    r = client.post(f"/support/settings/mailboxes/{mailbox}/members", data={"user_id": str(agent)})
    assert r.status_code == 400
    page = client.get("/support/settings/").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post(f"/support/settings/mailboxes/{mailbox}/members",
                    data={"user_id": str(agent), "action": "add", "csrf_token": token})
    assert r.status_code == 302
    agent_client = host.app.test_client()
    host.login(agent_client, agent)
    assert agent_client.get(f"/support/tickets/{ticket}").status_code == 200


def test_status_change_needs_csrf_and_writes_activity(host, client):
    mailbox, ticket, *_ = _ticket(host, "support@x.test", "Broken stove")
    agent = host.add_user("ada@x.test")
    _member(host, mailbox, agent)
    host.login(client, agent)
    assert client.post(f"/support/tickets/{ticket}/status", data={"status": "closed"}).status_code == 400
    page = client.get(f"/support/tickets/{ticket}").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post(f"/support/tickets/{ticket}/status", data={"status": "closed", "csrf_token": token},
                    follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "is now closed" in page and "open → closed" in page
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, ticket)
        assert t.status == "closed" and t.closed_at is not None


def test_dashboard_pages_carry_a_content_security_policy(host, client):
    host.login(client, host.add_user("boss@x.test", role="admin"))
    r = client.get("/support/")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
