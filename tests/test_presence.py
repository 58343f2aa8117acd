"""Collision safety: who else is viewing or replying to a ticket, and what arrived meanwhile."""
from datetime import timedelta

import pytest
import sqlalchemy as sa

from shared_inbox.models import utcnow
from test_ticket_actions import as_user, make_mailbox, make_ticket, member


@pytest.fixture
def world(host):
    """Support (Ada and Cara are members), billing (Ben), an admin, a customer, a ticket."""
    support = make_mailbox(host, "support@x.test")
    billing = make_mailbox(host, "billing@x.test")
    ada = host.add_user("ada@x.test", name="Ada")
    ben = host.add_user("ben@x.test", name="Ben")
    cara = host.add_user("cara@x.test", name="Cara")
    boss = host.add_user("boss@x.test", role="admin", name="Boss")
    shopper = host.add_user("shopper@x.test", role="customer", name="Shopper")
    member(host, support, ada)
    member(host, support, cara)
    member(host, billing, ben)
    ticket = make_ticket(host, support, "Tent pole broke")
    return dict(support=support, billing=billing, ada=ada, ben=ben, cara=cara, boss=boss,
                shopper=shopper, ticket=ticket)


def beat(client, tok, ticket_id, **data):
    return client.post(f"/support/tickets/{ticket_id}/presence", json=data,
                       headers={"X-CSRFToken": tok, "Accept": "application/json"})


def newest_message_id(host, ticket_id):
    with host.app.app_context():
        m = host.inbox.models
        return host.db.session.scalar(
            sa.select(sa.func.max(m.Message.id)).where(m.Message.ticket_id == ticket_id))


def add_message(host, ticket_id, kind="inbound", from_name="Alice Smith", text="More info"):
    with host.app.app_context():
        m = host.inbox.models
        t = host.db.session.get(m.Ticket, ticket_id)
        host.db.session.add(m.Message(ticket_id=t.id, mailbox_id=t.mailbox_id, kind=kind,
                                      from_email="alice@example.org", from_name=from_name,
                                      body_text=text, date=utcnow()))
        host.db.session.commit()


def test_heartbeat_is_refused_to_strangers_other_mailboxes_and_without_csrf(host, client, world):
    url = f"/support/tickets/{world['ticket']}/presence"
    r = client.post(url, json={})
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    tok = as_user(host, client, world["shopper"])
    assert beat(client, tok, world["ticket"]).status_code == 403
    tok = as_user(host, client, world["ben"])  # billing only
    assert beat(client, tok, world["ticket"]).status_code == 404
    tok = as_user(host, client, world["ada"])
    assert client.post(url, json={"state": "viewing"}).status_code == 400  # no CSRF token
    assert beat(client, tok, world["ticket"] + 1000).status_code == 404
    r = beat(client, tok, world["ticket"], state="viewing")
    assert r.status_code == 200 and r.is_json
    assert r.json["others"] == [] and r.json["new_messages"] == 0
    # Nobody learns about Ben's failed attempt on a ticket he may not see.
    with host.app.app_context():
        m = host.inbox.models
        who = set(host.db.session.scalars(sa.select(m.Presence.user_id)))
    assert who == {world["ada"]}


def test_each_agent_sees_the_other_viewing_then_replying(host, world):
    ada, cara = host.app.test_client(), host.app.test_client()
    ada_tok = as_user(host, ada, world["ada"])
    cara_tok = as_user(host, cara, world["cara"])
    page = ada.get(f"/support/tickets/{world['ticket']}")
    assert page.status_code == 200
    # Opening the page is enough for Cara to see Ada.
    r = beat(cara, cara_tok, world["ticket"])
    assert [p["text"] for p in r.json["others"]] == ["Ada is viewing"]
    assert [p["text"] for p in beat(ada, ada_tok, world["ticket"]).json["others"]] == \
        ["Cara is viewing"]
    # Ada starts typing a reply: Cara's next heartbeat (and a fresh page) says so.
    beat(ada, ada_tok, world["ticket"], state="replying")
    assert [p["text"] for p in beat(cara, cara_tok, world["ticket"]).json["others"]] == \
        ["Ada is replying"]
    html = cara.get(f"/support/tickets/{world['ticket']}").get_data(as_text=True)
    assert "Ada is replying" in html and "Cara is" not in html
    # An unknown state is recorded as viewing, never echoed.
    beat(ada, ada_tok, world["ticket"], state="<script>")
    assert [p["text"] for p in beat(cara, cara_tok, world["ticket"]).json["others"]] == \
        ["Ada is viewing"]


def test_the_admin_is_shown_and_an_agent_removed_from_the_mailbox_is_not(host, world):
    boss, cara = host.app.test_client(), host.app.test_client()
    boss_tok = as_user(host, boss, world["boss"])
    cara_tok = as_user(host, cara, world["cara"])
    beat(boss, boss_tok, world["ticket"])
    beat(cara, cara_tok, world["ticket"])
    assert [p["text"] for p in beat(boss, boss_tok, world["ticket"]).json["others"]] == \
        ["Cara is viewing"]
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.execute(sa.delete(m.MailboxMember).where(
            m.MailboxMember.user_id == world["cara"]))
        host.db.session.commit()
    assert beat(boss, boss_tok, world["ticket"]).json["others"] == []
    assert beat(cara, cara_tok, world["ticket"]).status_code == 404


def test_old_heartbeats_are_ignored_then_cleaned_up(host, world):
    from shared_inbox.services import presence

    t0 = utcnow()
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        ticket = session.get(m.Ticket, world["ticket"])
        ada = session.get(host.User, world["ada"])
        cara = session.get(host.User, world["cara"])
        presence.heartbeat(ticket, ada, "replying", now=t0)
        session.commit()
        assert [p["text"] for p in presence.others(ticket, cara, now=t0 + timedelta(seconds=40))] \
            == ["Ada is replying"]
        # PRESENCE_TIMEOUT (45 s) later Ada has closed the page as far as anyone knows.
        assert presence.others(ticket, cara, now=t0 + timedelta(seconds=46)) == []
        assert session.scalar(sa.select(sa.func.count(m.Presence.id))) == 1
        # Cara's heartbeat a few minutes later deletes the ticket's stale rows.
        presence.heartbeat(ticket, cara, now=t0 + timedelta(minutes=6))
        session.commit()
        assert list(session.scalars(sa.select(m.Presence.user_id))) == [world["cara"]]
        assert presence.sweep(now=t0 + timedelta(minutes=12)) == 1
        session.commit()
        assert session.scalar(sa.select(sa.func.count(m.Presence.id))) == 0


def test_timeout_and_interval_come_from_the_config(make_host, database):
    host = make_host(config={"SHARED_INBOX_PRESENCE_INTERVAL": 1,
                             "SHARED_INBOX_PRESENCE_TIMEOUT": 5})
    host.create_tables()
    support = make_mailbox(host, "support@x.test")
    ada, cara = host.add_user("ada@x.test", name="Ada"), host.add_user("cara@x.test", name="Cara")
    member(host, support, ada)
    member(host, support, cara)
    ticket_id = make_ticket(host, support)
    client = host.app.test_client()
    tok = as_user(host, client, ada)
    html = client.get(f"/support/tickets/{ticket_id}").get_data(as_text=True)
    assert 'data-interval="1"' in html
    assert beat(client, tok, ticket_id).json["interval"] == 1
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.execute(sa.update(m.Presence).values(
            last_seen=utcnow() - timedelta(seconds=6)))
        host.db.session.commit()
    other = host.app.test_client()
    other_tok = as_user(host, other, cara)
    assert beat(other, other_tok, ticket_id).json["others"] == []


def test_heartbeat_tells_the_page_about_new_messages_but_not_notes(host, client, world):
    tok = as_user(host, client, world["ada"])
    page = client.get(f"/support/tickets/{world['ticket']}").get_data(as_text=True)
    seen = newest_message_id(host, world["ticket"])
    assert f'data-seen="{seen}"' in page
    r = beat(client, tok, world["ticket"], seen_message_id=seen)
    assert r.json["new_messages"] == 0 and r.json["notice"] == ""
    add_message(host, world["ticket"], kind="note", from_name="Cara")
    assert beat(client, tok, world["ticket"], seen_message_id=seen).json["new_messages"] == 0
    add_message(host, world["ticket"], from_name="Alice <b>Smith</b>")
    r = beat(client, tok, world["ticket"], seen_message_id=seen)
    assert r.json["new_messages"] == 1
    assert r.json["notice"] == ("1 new message arrived since you opened this page "
                                "(from Alice <b>Smith</b>).")  # JSON text: the page sets textContent
    # The form-encoded heartbeat (no JSON body) works the same.
    r = client.post(f"/support/tickets/{world['ticket']}/presence",
                    data={"csrf_token": tok, "seen_message_id": str(seen)})
    assert r.json["new_messages"] == 1
    # Sending against the old page is still held back, with the message kept.
    r = client.post(f"/support/tickets/{world['ticket']}/reply",
                    data={"csrf_token": tok, "seen_message_id": str(seen), "text": "Draft KEEP-1"})
    assert r.status_code == 422
    body = r.get_data(as_text=True)
    assert "new message(s) arrived since you opened this page" in body and "Draft KEEP-1" in body


def test_ticket_page_marks_in_place_forms_and_regions(host, client, world):
    """The forms inbox.js posts in place, and the regions it swaps, are where it expects them."""
    as_user(host, client, world["ada"])
    html = client.get(f"/support/tickets/{world['ticket']}").get_data(as_text=True)
    for region in ("si-ticket-header", "si-status-section", "si-assignee-section",
                   "si-tags-section", "si-activity-section"):
        assert f'id="{region}" data-si-region' in html
    assert html.count("data-si-inplace") >= 4
    assert 'id="si-live"' in html and "presence.js" in html
    inbox = client.get("/support/").get_data(as_text=True)
    assert 'id="si-list" data-si-region' in inbox and "data-si-inplace" in inbox


def test_an_in_place_action_keeps_replying_and_a_page_load_resets_it(host, world):
    ada, cara = host.app.test_client(), host.app.test_client()
    ada_tok = as_user(host, ada, world["ada"])
    cara_tok = as_user(host, cara, world["cara"])
    url = f"/support/tickets/{world['ticket']}"
    beat(ada, ada_tok, world["ticket"], state="replying")
    # inbox.js assigns in place: the POST redirects to the page, fetched with this header.
    r = ada.post(f"{url}/assign", data={"csrf_token": ada_tok, "assignee_id": str(world["ada"])},
                 headers={"X-Requested-With": "fetch"}, follow_redirects=True)
    assert r.status_code == 200 and "now assigned to Ada" in r.get_data(as_text=True)
    assert [p["text"] for p in beat(cara, cara_tok, world["ticket"]).json["others"]] == \
        ["Ada is replying"]
    # Sending the reply loads the page again: Ada is back to viewing at once.
    ada.get(url)
    assert [p["text"] for p in beat(cara, cara_tok, world["ticket"]).json["others"]] == \
        ["Ada is viewing"]
