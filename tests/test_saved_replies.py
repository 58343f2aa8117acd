"""Saved replies: admin settings pages, sandboxed placeholders, the JSON list and the sidebar."""
import time

import pytest
import sqlalchemy as sa

from test_ticket_actions import as_user
from test_ticket_actions import world as world  # noqa: F401 (the fixture)

MALICIOUS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ customer.__class__ }}",
    "{{ customer['__class__'] }}",
    "{% for x in range(10**9) %}x{% endfor %}",
    "{{ lipsum.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{% set x = 1 %}",
    "{{ 'a' * 1000000000 }}",
    "{{ customer.name|center(1000000000) }}",
    "{{ customer.name|attr('__class__') }}",
]


def add_reply(host, title, body, mailbox_id=None):
    with host.app.app_context():
        reply = host.inbox.models.SavedReply(title=title, body=body, mailbox_id=mailbox_id)
        host.db.session.add(reply)
        host.db.session.commit()
        return reply.id


def replies(host):
    with host.app.app_context():
        m = host.inbox.models
        return [(r.title, r.body, r.mailbox_id) for r in host.db.session.scalars(
            sa.select(m.SavedReply).order_by(m.SavedReply.id))]


def test_settings_pages_are_for_admins_only(host, client, world):
    rid = add_reply(host, "Thanks", "Thank you")
    pages = ["/support/settings/saved-replies/", "/support/settings/saved-replies/new",
             f"/support/settings/saved-replies/{rid}/edit"]
    for url in pages:
        assert client.get(url).status_code == 302
    tok = as_user(host, client, world["ada"])
    for url in pages:
        assert client.get(url).status_code == 403
    assert client.post("/support/settings/saved-replies/new",
                       data={"title": "x", "body": "y", "csrf_token": tok}).status_code == 403
    assert client.post(f"/support/settings/saved-replies/{rid}/delete",
                       data={"csrf_token": tok}).status_code == 403
    host.login(client, world["shopper"])
    assert client.get(pages[0]).status_code == 403
    host.login(client, world["boss"])
    for url in pages:
        assert client.get(url).status_code == 200
    assert client.get("/support/settings/saved-replies/999/edit").status_code == 404
    assert "/support/settings/saved-replies/" in client.get("/support/settings/").get_data(
        as_text=True)


def test_admin_creates_edits_and_deletes_with_csrf(host, client, world):
    tok = as_user(host, client, world["boss"])
    url = "/support/settings/saved-replies/new"
    assert client.post(url, data={"title": "Thanks", "body": "Hi"}).status_code == 400
    r = client.post(url, data={"title": " Thanks ", "body": "Hi {{ customer.first_name }},",
                               "mailbox_id": str(world["support"]), "csrf_token": tok},
                    follow_redirects=True)
    assert "Saved reply Thanks added" in r.get_data(as_text=True)
    assert replies(host) == [("Thanks", "Hi {{ customer.first_name }},", world["support"])]
    rid = add_reply(host, "Other", "x")
    edit = f"/support/settings/saved-replies/{rid}/edit"
    assert 'value="Other"' in client.get(edit).get_data(as_text=True)
    r = client.post(edit, data={"title": "Global", "body": "Bye", "mailbox_id": "",
                                "csrf_token": tok}, follow_redirects=True)
    assert "Saved reply Global saved" in r.get_data(as_text=True)
    assert replies(host)[1] == ("Global", "Bye", None)
    r = client.post(f"/support/settings/saved-replies/{rid}/delete", data={"csrf_token": tok},
                    follow_redirects=True)
    assert "Saved reply Global deleted" in r.get_data(as_text=True)
    assert [t for t, _, _ in replies(host)] == ["Thanks"]


def test_form_errors_are_shown_beside_fields_with_input_kept(host, client, world):
    tok = as_user(host, client, world["boss"])
    r = client.post("/support/settings/saved-replies/new",
                    data={"title": "", "body": "Hello {{ customer.name ", "mailbox_id": "12345",
                          "csrf_token": tok})
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert 'id="si-title-error">Title is required.' in page
    assert 'id="si-body-error">Placeholder error on line 1' in page
    assert 'id="si-mailbox_id-error">Choose one of the options.' in page
    assert "Hello {{ customer.name </textarea>" in page
    assert replies(host) == []


@pytest.mark.parametrize("body", MALICIOUS)
def test_malicious_templates_are_refused_when_saving(host, client, world, body):
    tok = as_user(host, client, world["boss"])
    started = time.monotonic()
    r = client.post("/support/settings/saved-replies/new",
                    data={"title": "Evil", "body": body, "csrf_token": tok})
    assert time.monotonic() - started < 5
    assert r.status_code == 400
    assert 'id="si-body-error"' in r.get_data(as_text=True)
    assert replies(host) == []


@pytest.mark.parametrize("body", MALICIOUS)
def test_malicious_templates_fall_back_to_the_raw_body_when_rendered(host, body):
    from shared_inbox.services.saved_replies import placeholder_context, render_body

    with host.app.app_context():
        started = time.monotonic()
        assert render_body(body, placeholder_context()) == body
        assert time.monotonic() - started < 5


def test_the_sandbox_itself_refuses_dunders_and_huge_ranges(host):
    """Belt and braces: even without our node whitelist the sandbox holds."""
    from jinja2.exceptions import SecurityError

    from shared_inbox.services.saved_replies import _env

    with pytest.raises(SecurityError):
        _env.from_string("{{ ''.__class__.__mro__|list }}").render()
    started = time.monotonic()
    with pytest.raises(OverflowError):
        _env.from_string("{% for x in range(10**9) %}{% endfor %}").render()
    assert time.monotonic() - started < 5


def test_placeholders_render_for_the_ticket_and_agent(host, client, world):
    add_reply(host, "Greeting",
              "Hi {{ customer.first_name }} ({{ customer.name }}), {{ agent.name }} here about "
              "#{{ ticket.number }} {{ ticket.subject }} from {{ mailbox.name }}.{{ nothing.here }}"
              "{% if customer.email %} Mail: {{ customer.email|upper }}{% endif %}")
    add_reply(host, "Support only", "Support <b>{{ mailbox.name }}</b>", world["support"])
    add_reply(host, "Billing only", "Billing", world["billing"])
    add_reply(host, "Broken", "{{ ''.__class__ }}")
    host.login(client, world["ada"])
    r = client.get(f"/support/tickets/{world['ticket']}/saved-replies")
    assert r.status_code == 200 and r.is_json
    data = r.get_json()["saved_replies"]
    assert [d["title"] for d in data] == ["Broken", "Greeting", "Support only"]
    assert data[0]["text"] == "{{ ''.__class__ }}"
    assert data[1]["text"] == (
        f"Hi Alice (Alice Smith), Ada here about #{world['ticket']} Tent pole broke from "
        "Support. Mail: ALICE@EXAMPLE.ORG")
    assert data[2]["text"] == "Support <b>Support</b>"  # plain text: never escaped

    r = client.get(f"/support/tickets/{world['ticket']}/saved-replies?q=SUPPORT")
    assert [d["title"] for d in r.get_json()["saved_replies"]] == ["Support only"]
    r = client.get(f"/support/tickets/{world['ticket']}/saved-replies?q=here%20about")
    assert [d["title"] for d in r.get_json()["saved_replies"]] == ["Greeting"]
    r = client.get(f"/support/tickets/{world['ticket']}/saved-replies?q=100%25")
    assert r.get_json()["saved_replies"] == []

    # The no-JS fallback in the sidebar shows the same rendered text.
    page = client.get(f"/support/tickets/{world['ticket']}").get_data(as_text=True)
    sidebar = page.split("<summary>Saved replies</summary>")[1].split("</details>")[0]
    assert "Hi Alice (Alice Smith), Ada here" in sidebar
    assert "Support &lt;b&gt;Support&lt;/b&gt;" in sidebar and "Billing" not in sidebar


def test_json_endpoint_access(host, client, world):
    url = f"/support/tickets/{world['ticket']}/saved-replies"
    assert client.get(url).status_code == 302
    host.login(client, world["shopper"])
    assert client.get(url).status_code == 403
    host.login(client, world["ben"])
    assert client.get(url).status_code == 404
    host.login(client, world["boss"])
    assert client.get(url).status_code == 200
