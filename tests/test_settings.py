"""Admins add and edit mailboxes in the settings pages; passwords are write-only."""
import html
import re
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from shared_inbox.csrf import SESSION_KEY
from shared_inbox.mail.devserver import DevMailServer

ADDRESS = "support@example.com"
PASSWORD = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def mail_server():
    with DevMailServer(users={ADDRESS: PASSWORD, "sales@example.com": "sales-pw"}) as server:
        yield server


@pytest.fixture
def admin(host, client):
    uid = host.add_user("boss@x.test", role="admin")
    host.login(client, uid)
    return uid


def token(client, url="/support/settings/mailboxes/new"):
    page = client.get(url).get_data(as_text=True)
    return page.split('name="csrf_token" value="')[1].split('"')[0]


def form_data(server, **overrides):
    data = {
        "name": "Support", "email_address": ADDRESS, "from_name": "Ada at Acme Support",
        "signature": "-- \nAcme Support", "imap_host": "127.0.0.1",
        "imap_port": str(server.imap_port), "imap_security": "plain", "imap_username": "",
        "imap_password": PASSWORD, "imap_folder": "INBOX", "after_fetch": "leave",
        "move_to_folder": "", "smtp_host": "127.0.0.1", "smtp_port": str(server.smtp_port),
        "smtp_security": "plain", "smtp_username": "", "smtp_password": "",
        "is_active": "1", "import_from": "new", "import_since": "", "action": "save",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def create(client, server, **overrides):
    data = form_data(server, **overrides)
    data["csrf_token"] = token(client)
    return client.post("/support/settings/mailboxes/new", data=data)


def mailbox_row(host, address=ADDRESS):
    with host.app.app_context():
        m = host.inbox.models
        mailbox = host.db.session.scalar(
            sa.select(m.Mailbox).where(m.Mailbox.email_address == address))
        if mailbox is not None:
            host.db.session.expunge(mailbox)
        return mailbox


def mailbox_count(host):
    with host.app.app_context():
        return host.db.session.scalar(sa.select(sa.func.count(host.inbox.models.Mailbox.id)))


def field_error(page, name):
    """The error shown beside one field, or None."""
    match = re.search(rf'id="si-{name}-error">([^<]*)<', page)
    return html.unescape(match.group(1)) if match else None


def input_value(page, name):
    match = re.search(rf'<input id="si-{name}" name="{name}" type="[a-z]+" value="([^"]*)"', page)
    return html.unescape(match.group(1)) if match else None


def test_admin_creates_a_mailbox_and_its_password_is_encrypted(host, client, admin, mail_server):
    assert "Add a mailbox" in client.get("/support/settings/").get_data(as_text=True)
    page = client.get("/support/settings/mailboxes/new").get_data(as_text=True)
    assert 'name="csrf_token"' in page
    for name in ("name", "email_address", "imap_host", "imap_port", "imap_password",
                 "imap_folder", "smtp_host", "smtp_password", "import_since"):
        assert f'<label for="si-{name}">' in page, name

    r = create(client, mail_server)
    assert r.status_code == 302 and r.headers["Location"].endswith("/support/settings/")
    page = client.get("/support/settings/").get_data(as_text=True)
    assert "Mailbox Support &lt;support@example.com&gt; added" in page
    assert f"IMAP 127.0.0.1:{mail_server.imap_port}" in page and "Not polled yet" in page

    mailbox = mailbox_row(host)
    assert mailbox.from_name == "Ada at Acme Support" and mailbox.imap_security == "plain"
    assert mailbox.imap_username == "" and mailbox.is_active and mailbox.import_since is None
    assert mailbox.smtp_secret is None  # blank SMTP password: the IMAP one is used
    with host.app.app_context():
        mb = host.db.session.get(host.inbox.models.Mailbox, mailbox.id)
        assert mb.imap_password == PASSWORD and mb.smtp_password == PASSWORD
        raw = host.db.session.execute(sa.text("SELECT * FROM inbox_mailbox")).all()
    assert raw and PASSWORD not in repr(raw)


def test_import_since_date_is_stored_on_create(host, client, admin, mail_server):
    r = create(client, mail_server, import_from="date", import_since="2024-03-05")
    assert r.status_code == 302
    assert mailbox_row(host).import_since == datetime(2024, 3, 5)


def test_import_since_must_be_a_date_not_in_the_future(host, client, admin, mail_server):
    r = create(client, mail_server, import_from="date", import_since="05/03/2024")
    assert r.status_code == 400
    assert field_error(r.get_data(as_text=True), "import_since") == "Enter a date like 2026-01-31."
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    r = create(client, mail_server, import_from="date", import_since=tomorrow)
    assert r.status_code == 400
    assert "in the future" in field_error(r.get_data(as_text=True), "import_since")
    assert mailbox_count(host) == 0


@pytest.mark.parametrize("overrides, field, message", [
    ({"email_address": "not-an-address"}, "email_address", "Enter an email address"),
    ({"imap_port": "70000"}, "imap_port", "Enter a port number from 1 to 65535."),
    ({"smtp_port": "abc"}, "smtp_port", "Enter a port number from 1 to 65535."),
    ({"imap_host": "imap.example.com"}, "imap_security", "Unencrypted IMAP is only allowed"),
    ({"after_fetch": "move", "move_to_folder": ""}, "move_to_folder", "Name the folder"),
    ({"name": "  "}, "name", "Name is required."),
    ({"imap_password": ""}, "imap_password", "IMAP password is required."),
])
def test_validation_errors_beside_the_field_and_input_kept(host, client, admin, mail_server,
                                                           overrides, field, message):
    r = create(client, mail_server, **overrides)
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert field_error(page, field).startswith(message), field_error(page, field)
    assert 'aria-invalid="true"' in page
    # What was typed is shown again, except the password.
    assert input_value(page, "from_name") == "Ada at Acme Support"
    assert input_value(page, "imap_port") == overrides.get("imap_port", str(mail_server.imap_port))
    if "email_address" in overrides:
        assert input_value(page, "email_address") == overrides["email_address"]
    assert "Acme Support</textarea>" in page
    assert PASSWORD not in page
    assert mailbox_count(host) == 0


def test_duplicate_address_is_refused(host, client, admin, mail_server):
    assert create(client, mail_server).status_code == 302
    r = create(client, mail_server, name="Support again", email_address="Support@Example.com")
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert field_error(page, "email_address") == "Another mailbox already uses this address."
    assert input_value(page, "name") == "Support again"
    assert mailbox_count(host) == 1


def test_duplicate_address_saved_meanwhile_is_caught_by_the_database(
        host, client, admin, mail_server, monkeypatch):
    from shared_inbox.views import settings

    assert create(client, mail_server).status_code == 302
    monkeypatch.setattr(settings, "_address_taken", lambda *args: False)  # lost the race
    r = create(client, mail_server, name="Support again")
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert field_error(page, "email_address") == "Another mailbox already uses this address."
    assert input_value(page, "name") == "Support again"
    assert mailbox_count(host) == 1


def test_plain_imap_is_accepted_to_loopback_names(host, client, admin, mail_server):
    r = create(client, mail_server, imap_host="localhost", smtp_host="::1")
    assert r.status_code == 302


def test_edit_never_renders_the_password_and_blank_keeps_it(host, client, admin, mail_server):
    create(client, mail_server, smtp_password="smtp-Only-pw")
    mailbox = mailbox_row(host)
    edit_url = f"/support/settings/mailboxes/{mailbox.id}/edit"
    page = client.get(edit_url).get_data(as_text=True)
    assert "a password is stored — leave blank to keep it" in page.lower()
    assert PASSWORD not in page and "smtp-Only-pw" not in page
    assert mailbox.imap_secret not in page and mailbox.smtp_secret not in page
    assert not re.search(r'type="password"[^>]*value=', page)
    assert input_value(page, "from_name") == "Ada at Acme Support"
    assert "How far back to import" not in page  # only when creating

    data = form_data(mail_server, name="Help desk", imap_password="", smtp_password="",
                     after_fetch="seen", is_active=None)
    data["csrf_token"] = token(client, edit_url)
    r = client.post(edit_url, data=data)
    assert r.status_code == 302
    edited = mailbox_row(host)
    assert edited.name == "Help desk" and edited.after_fetch == "seen" and not edited.is_active
    assert edited.imap_secret == mailbox.imap_secret and edited.smtp_secret == mailbox.smtp_secret
    page = client.get("/support/settings/").get_data(as_text=True)
    assert "inactive" in page and f'href="{edit_url}"' in page

    # The stored IMAP password still logs in; the stored SMTP-only password is not the dev
    # server's, and the test says so (SMTP is tested too, nothing is sent).
    r = client.post(f"/support/settings/mailboxes/{mailbox.id}/test",
                    data={"csrf_token": token(client, edit_url)}, follow_redirects=True)
    page = html.unescape(r.get_data(as_text=True))
    assert "Connection failed: SMTP failed: SMTP login failed, check the user name and " \
        "password" in page
    assert "connected: folder 'INBOX'" in page


def test_edit_with_a_new_password_replaces_it(host, client, admin, mail_server):
    create(client, mail_server, imap_password="old-password")
    mailbox = mailbox_row(host)
    edit_url = f"/support/settings/mailboxes/{mailbox.id}/edit"
    data = form_data(mail_server)
    data["csrf_token"] = token(client, edit_url)
    assert client.post(edit_url, data=data).status_code == 302
    with host.app.app_context():
        assert host.db.session.get(host.inbox.models.Mailbox, mailbox.id).imap_password == PASSWORD


def test_test_connection_of_saved_settings(host, client, admin, mail_server):
    create(client, mail_server, imap_password="wrong")
    mailbox = mailbox_row(host)
    test_url = f"/support/settings/mailboxes/{mailbox.id}/test"
    edit_url = f"/support/settings/mailboxes/{mailbox.id}/edit"
    r = client.post(test_url, data={"csrf_token": token(client)})
    assert r.status_code == 302 and r.headers["Location"].endswith(edit_url)
    page = client.get(edit_url).get_data(as_text=True)
    assert "login failed: check the user name and password" in page
    assert f'action="{test_url}"' in page

    data = form_data(mail_server, imap_folder="Nowhere")
    data["csrf_token"] = token(client, edit_url)
    assert client.post(edit_url, data=data).status_code == 302
    r = client.post(test_url, data={"csrf_token": token(client)}, follow_redirects=True)
    assert "folder &#39;Nowhere&#39; not found on the server" in r.get_data(as_text=True)

    data = form_data(mail_server, imap_password="")  # keeps the stored (right) password
    data["csrf_token"] = token(client, edit_url)
    assert client.post(edit_url, data=data).status_code == 302
    r = client.post(test_url, data={"csrf_token": token(client)}, follow_redirects=True)
    assert "Saved settings work: connected" in r.get_data(as_text=True)


def test_test_before_saving_keeps_the_input_and_saves_nothing(host, client, admin, mail_server):
    r = create(client, mail_server, action="test")
    page = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "These settings work: connected: folder &#39;INBOX&#39;" in page
    # SMTP is tried too: logged in (a blank SMTP user name is the IMAP one), nothing sent.
    assert f"SMTP server 127.0.0.1:{mail_server.smtp_port} accepts mail from {ADDRESS} " \
        "(logged in)" in page
    assert mail_server.sent == []
    assert input_value(page, "from_name") == "Ada at Acme Support"
    assert PASSWORD not in page
    assert mailbox_count(host) == 0

    r = create(client, mail_server, action="test", imap_password="wrong")
    page = r.get_data(as_text=True)
    assert "Connection failed: login failed: check the user name and password" in page
    assert input_value(page, "name") == "Support" and "wrong" not in page

    r = create(client, mail_server, action="test", imap_folder="Archive/2019")
    assert "folder &#39;Archive/2019&#39; not found on the server" in r.get_data(as_text=True)

    # Validation comes first.
    r = create(client, mail_server, action="test", imap_port="0")
    assert r.status_code == 400 and field_error(r.get_data(as_text=True), "imap_port")
    assert mailbox_count(host) == 0


def test_test_before_saving_an_edit_uses_the_stored_password(host, client, admin, mail_server):
    create(client, mail_server)
    mailbox = mailbox_row(host)
    edit_url = f"/support/settings/mailboxes/{mailbox.id}/edit"
    data = form_data(mail_server, imap_password="", imap_folder="Nowhere", name="Renamed",
                     action="test")
    data["csrf_token"] = token(client, edit_url)
    page = client.post(edit_url, data=data).get_data(as_text=True)
    assert "folder &#39;Nowhere&#39; not found on the server" in page
    assert input_value(page, "name") == "Renamed"
    data.update(imap_folder="INBOX")
    page = client.post(edit_url, data=data).get_data(as_text=True)
    assert "These settings work" in page
    unchanged = mailbox_row(host)
    assert unchanged.name == "Support" and unchanged.imap_folder == "INBOX"


def test_agents_get_403_on_every_settings_url(host, client, mail_server):
    admin_client = host.app.test_client()
    host.login(admin_client, host.add_user("boss@x.test", role="admin"))
    create(admin_client, mail_server)
    mailbox_id = mailbox_row(host).id
    agent = host.add_user("ada@x.test")
    host.login(client, agent)
    with client.session_transaction() as sess:  # an agent's token, as any dashboard form has
        sess[SESSION_KEY] = csrf = "agent-token"
    for url in ("/support/settings/", "/support/settings/mailboxes/new",
                f"/support/settings/mailboxes/{mailbox_id}/edit"):
        assert client.get(url).status_code == 403, url
    for url in ("/support/settings/mailboxes/new", f"/support/settings/mailboxes/{mailbox_id}/edit",
                f"/support/settings/mailboxes/{mailbox_id}/test",
                f"/support/settings/mailboxes/{mailbox_id}/members",
                "/support/settings/mailboxes/999/edit"):
        r = client.post(url, data=dict(form_data(mail_server, email_address="x@y.test"),
                                       csrf_token=csrf))
        assert r.status_code == 403, url
    assert mailbox_count(host) == 1 and mailbox_row(host).name == "Support"


def test_anonymous_users_go_to_the_login_view(host, client):
    for url in ("/support/settings/mailboxes/new", "/support/settings/mailboxes/1/edit"):
        r = client.get(url)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=")


def test_posts_without_csrf_token_are_refused(host, client, admin, mail_server):
    r = client.post("/support/settings/mailboxes/new", data=form_data(mail_server))
    assert r.status_code == 400 and mailbox_count(host) == 0
    create(client, mail_server)
    mailbox = mailbox_row(host)
    r = client.post(f"/support/settings/mailboxes/{mailbox.id}/edit",
                    data=form_data(mail_server, name="Hijacked"))
    assert r.status_code == 400 and mailbox_row(host).name == "Support"
    r = client.post(f"/support/settings/mailboxes/{mailbox.id}/test", data={})
    assert r.status_code == 400


def test_unknown_mailbox_is_404_for_admins(host, client, admin):
    assert client.get("/support/settings/mailboxes/999/edit").status_code == 404
    r = client.post("/support/settings/mailboxes/999/test", data={"csrf_token": token(client)})
    assert r.status_code == 404


def test_settings_list_shows_poll_health(host, client, admin, mail_server):
    create(client, mail_server)
    create(client, mail_server, name="Sales", email_address="sales@example.com")
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        support = session.scalar(sa.select(m.Mailbox).where(m.Mailbox.email_address == ADDRESS))
        support.last_error = "login failed: check the user name and password"
        support.needs_reauth = True
        support.last_polled_at = datetime(2026, 1, 2, 3, 4)
        sales = session.scalar(sa.select(m.Mailbox).where(m.Mailbox.name == "Sales"))
        sales.last_polled_at = datetime(2026, 1, 2, 5, 6)
        session.commit()
    page = client.get("/support/settings/").get_data(as_text=True)
    assert "Last poll failed at 2026-01-02 03:04 UTC: login failed" in page
    assert "needs re-authorisation" in page
    assert "Last polled 2026-01-02 05:06 UTC." in page
    assert "sales@example.com" in page and "IMAP 127.0.0.1:" in page


def test_sent_folder_copy_is_a_per_mailbox_choice(host, client, admin, mail_server):
    create(client, mail_server)
    r = create(client, mail_server, email_address="sales@example.com", imap_password="sales-pw",
               append_to_sent="1")
    assert r.status_code == 302
    assert mailbox_row(host, "sales@example.com").append_to_sent is True
    assert mailbox_row(host).append_to_sent is False
    edit_url = f"/support/settings/mailboxes/{mailbox_row(host, 'sales@example.com').id}/edit"
    page = client.get(edit_url).get_data(as_text=True)
    assert re.search(r'name="append_to_sent" value="1" checked', page)
    assert "File a copy of each reply in the Sent folder (Sent)" in page
    data = form_data(mail_server, email_address="sales@example.com", imap_password="")
    data["csrf_token"] = token(client, edit_url)
    assert client.post(edit_url, data=data).status_code == 302  # unticked: off again
    assert mailbox_row(host, "sales@example.com").append_to_sent is False
