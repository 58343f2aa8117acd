"""The customer profile: conversations across the mailboxes the agent may see (and no
others), name and notes edited with errors beside the field, linked from the ticket."""
import pytest
import sqlalchemy as sa

from test_ticket_actions import as_user, make_mailbox, make_ticket, member


@pytest.fixture
def world(host):
    support = make_mailbox(host, "support@x.test")
    sales = make_mailbox(host, "sales@x.test")
    billing = make_mailbox(host, "billing@x.test")
    ada = host.add_user("ada@x.test", name="Ada")  # support + sales
    ben = host.add_user("ben@x.test", name="Ben")  # billing only
    cara = host.add_user("cara@x.test", name="Cara")  # no mailbox
    boss = host.add_user("boss@x.test", role="admin", name="Boss")
    shopper = host.add_user("shopper@x.test", role="customer")
    member(host, support, ada)
    member(host, sales, ada)
    member(host, billing, ben)
    t1 = make_ticket(host, support, "Tent pole broke", customer_email="jo@example.org",
                     customer_name="Jo Doe")
    t2 = make_ticket(host, sales, "Bulk order for our club", customer_email="jo@example.org")
    t3 = make_ticket(host, billing, "Refund for invoice 77", customer_email="jo@example.org")
    other = make_ticket(host, billing, "Card declined", customer_email="max@example.org")
    with host.app.app_context():
        m = host.inbox.models
        ids = {c.email: c.id for c in host.db.session.scalars(sa.select(m.Customer))}
    return dict(ada=ada, ben=ben, cara=cara, boss=boss, shopper=shopper, t1=t1, t2=t2, t3=t3,
                other=other, jo=ids["jo@example.org"], max=ids["max@example.org"])


def profile(client, customer_id):
    return client.get(f"/support/customers/{customer_id}")


def test_agent_sees_only_conversations_in_their_mailboxes(host, client, world):
    as_user(host, client, world["ada"])
    r = profile(client, world["jo"])
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert "Jo Doe" in page and "jo@example.org" in page
    assert "Tent pole broke" in page and "Bulk order for our club" in page
    assert "Refund for invoice 77" not in page  # billing: not Ada's
    assert f'/support/tickets/{world["t3"]}"' not in page

    as_user(host, client, world["ben"])
    page = profile(client, world["jo"]).get_data(as_text=True)
    assert "Refund for invoice 77" in page
    assert "Tent pole broke" not in page and "Bulk order" not in page


def test_admin_sees_every_conversation(host, client, world):
    as_user(host, client, world["boss"])
    page = profile(client, world["jo"]).get_data(as_text=True)
    for subject in ("Tent pole broke", "Bulk order for our club", "Refund for invoice 77"):
        assert subject in page


def test_customers_without_visible_conversations_are_404(host, client, world):
    as_user(host, client, world["ada"])
    assert profile(client, world["max"]).status_code == 404  # only in billing
    assert profile(client, 9999).status_code == 404
    as_user(host, client, world["cara"])
    assert profile(client, world["jo"]).status_code == 404
    tok = as_user(host, client, world["ada"])
    r = client.post(f"/support/customers/{world['max']}",
                    data={"name": "Hacked", "notes": "", "csrf_token": tok})
    assert r.status_code == 404
    with host.app.app_context():
        assert host.db.session.get(host.inbox.models.Customer, world["max"]).name != "Hacked"


def test_non_agents_and_anonymous_users_are_kept_out(host, client, world):
    r = profile(client, world["jo"])
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    as_user(host, client, world["shopper"])
    assert profile(client, world["jo"]).status_code == 403


def test_ticket_sidebar_links_to_the_profile_and_shows_notes(host, client, world):
    tok = as_user(host, client, world["ada"])
    client.post(f"/support/customers/{world['jo']}",
                data={"name": "Jo Doe", "notes": "Prefers phone calls.\nVIP since 2019.",
                      "csrf_token": tok})
    page = client.get(f"/support/tickets/{world['t1']}").get_data(as_text=True)
    assert f'href="/support/customers/{world["jo"]}"' in page
    assert "Prefers phone calls." in page


def test_edit_name_and_notes(host, client, world):
    tok = as_user(host, client, world["ada"])
    r = client.post(f"/support/customers/{world['jo']}",
                    data={"name": "  Jo Doe-Smith ", "notes": "Line one\nLine two <b>bold</b>",
                          "csrf_token": tok})
    assert r.status_code == 302
    with host.app.app_context():
        c = host.db.session.get(host.inbox.models.Customer, world["jo"])
        assert (c.name, c.notes) == ("Jo Doe-Smith", "Line one\nLine two <b>bold</b>")
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Saved Jo Doe-Smith." in page
    assert "Line two &lt;b&gt;bold&lt;/b&gt;" in page  # shown as text, never as markup


@pytest.mark.parametrize("field,data,message", [
    ("name", {"name": "Jo\r\nBcc: spam@evil.test", "notes": "keep me"}, "line breaks"),
    ("name", {"name": "J" * 256, "notes": "keep me"}, "at most 255"),
    ("notes", {"name": "Jo typed", "notes": "x" * 10001}, "at most 10000"),
])
def test_bad_input_shows_the_error_beside_the_field_and_keeps_input(
        host, client, world, field, data, message):
    tok = as_user(host, client, world["ada"])
    r = client.post(f"/support/customers/{world['jo']}", data=dict(data, csrf_token=tok))
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    error = page.split(f'id="si-{field}-error">')[1].split("</span>")[0]
    assert message in error
    if field == "name":
        assert ">keep me</textarea>" in page
    else:
        assert 'value="Jo typed"' in page
    assert "Tent pole broke" in page  # the rest of the page is still there
    with host.app.app_context():
        c = host.db.session.get(host.inbox.models.Customer, world["jo"])
        assert (c.name, c.notes) == ("Jo Doe", "")


def test_edit_needs_the_csrf_token(host, client, world):
    as_user(host, client, world["ada"])
    r = client.post(f"/support/customers/{world['jo']}", data={"name": "X", "notes": ""})
    assert r.status_code == 400
    with host.app.app_context():
        assert host.db.session.get(host.inbox.models.Customer, world["jo"]).name == "Jo Doe"


def test_a_name_the_agents_set_survives_the_customers_next_mail(host, client, world):
    """The display name of a mail is whatever the sender typed (or a spoofer chose): it
    names a new customer, but never overwrites the name an agent gave them."""
    from shared_inbox.services.ingest import ingest
    from test_poll import mail

    tok = as_user(host, client, world["ada"])
    client.post(f"/support/customers/{world['jo']}",
                data={"name": "Joanna Doe (VIP)", "notes": "", "csrf_token": tok})
    msg = mail("Another question", "Hi again", sender="jo@example.org", name="jo",
               msgid="another-question")
    newcomer = mail("First time", "Hello", sender="kim@example.org", name="Kim Lee",
                    msgid="first-time")
    with host.app.app_context():
        m = host.inbox.models
        support = host.db.session.scalar(
            sa.select(m.Mailbox).where(m.Mailbox.email_address == "support@x.test"))
        assert ingest(support, msg) is not None
        assert ingest(support, newcomer) is not None
        names = dict(host.db.session.execute(sa.select(m.Customer.email, m.Customer.name)).all())
    assert names["jo@example.org"] == "Joanna Doe (VIP)"
    assert names["kim@example.org"] == "Kim Lee"
    page = profile(client, world["jo"]).get_data(as_text=True)
    assert "Another question" in page and "Joanna Doe (VIP)" in page
