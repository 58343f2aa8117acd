"""Ticket page actions: assign, tags, snooze, merge, show images, sidebar, newest message."""
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from shared_inbox.models import utcnow

LIVE_SRC = re.compile(r"(?<![-\w])src=(?:&#34;|&quot;)(https?://[^&]*)")
REMOTE_HTML = '<p>Hi</p><img data-remote-src="https://tracker.example/pixel.png" alt="x">'


# --- helpers shared with test_saved_replies.py and test_tags.py ---------------------------

def make_mailbox(host, address):
    with host.app.app_context():
        m = host.inbox.models
        mb = host.db.session.scalar(sa.select(m.Mailbox).where(m.Mailbox.email_address == address))
        if mb is None:
            mb = m.Mailbox(name=address.split("@")[0].title(), email_address=address)
            host.db.session.add(mb)
            host.db.session.commit()
        return mb.id


def make_ticket(host, mailbox_id, subject="Help", customer_email="alice@example.org",
                customer_name="Alice Smith", bodies=("Hello",), html=None, when=None):
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        customer = session.scalar(sa.select(m.Customer).where(m.Customer.email == customer_email))
        if customer is None:
            customer = m.Customer(email=customer_email, name=customer_name)
        when = when or utcnow()
        ticket = m.Ticket(mailbox_id=mailbox_id, customer=customer, subject=subject,
                          last_message_at=when)
        session.add(ticket)
        session.flush()
        for i, body in enumerate(bodies):
            session.add(m.Message(ticket_id=ticket.id, mailbox_id=mailbox_id, kind="inbound",
                                  from_email=customer_email, from_name=customer_name,
                                  body_text=body, body_html=html if i == 0 else None,
                                  date=when + timedelta(seconds=i)))
        session.commit()
        return ticket.id


def member(host, mailbox_id, uid):
    with host.app.app_context():
        host.db.session.add(host.inbox.models.MailboxMember(mailbox_id=mailbox_id, user_id=uid))
        host.db.session.commit()


def token(client):
    """The session's CSRF token, as the dashboard's forms carry it."""
    from shared_inbox.csrf import SESSION_KEY

    with client.session_transaction() as sess:
        sess.setdefault(SESSION_KEY, "test-csrf-token")
        return sess[SESSION_KEY]


def activities(host, ticket_id):
    with host.app.app_context():
        m = host.inbox.models
        return [(a.action, a.detail) for a in host.db.session.scalars(
            sa.select(m.Activity).where(m.Activity.ticket_id == ticket_id).order_by(m.Activity.id))]


def get_ticket(host, ticket_id):
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, ticket_id)
        host.db.session.expunge(t)
        return t


@pytest.fixture
def world(host):
    """Support (Ada is a member) and billing (Ben is a member) mailboxes, an admin, a customer."""
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
    other = make_ticket(host, billing, "Refund please")
    return dict(support=support, billing=billing, ada=ada, ben=ben, cara=cara, boss=boss,
                shopper=shopper, ticket=ticket, other=other)


def as_user(host, client, uid):
    host.login(client, uid)
    return token(client)


# --- who may do what ------------------------------------------------------------------------

ACTIONS = [
    ("assign", {"assignee_id": ""}),
    ("snooze", {"until": "2999-01-01T09:00"}),
    ("unsnooze", {}),
    ("merge", {"target": "1"}),
    ("tags", {"name": "vip"}),
]


@pytest.mark.parametrize("action,data", ACTIONS)
def test_actions_refuse_anonymous_non_agents_other_mailboxes_and_missing_csrf(
        host, client, world, action, data):
    url = f"/support/tickets/{world['ticket']}/{action}"
    r = client.post(url, data=data)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    tok = as_user(host, client, world["shopper"])
    assert client.post(url, data=dict(data, csrf_token=tok)).status_code == 403
    tok = as_user(host, client, world["ben"])
    assert client.post(url, data=dict(data, csrf_token=tok)).status_code == 404
    assert client.post(url, data=data).status_code == 400
    tok = as_user(host, client, world["ada"])
    assert client.post(url, data=data).status_code == 400
    assert client.post(url, data=dict(data, csrf_token=tok)).status_code == 302


def test_ticket_page_for_each_kind_of_user(host, client, world):
    url = f"/support/tickets/{world['ticket']}"
    assert client.get(url).status_code == 302
    host.login(client, world["shopper"])
    assert client.get(url).status_code == 403
    host.login(client, world["ben"])
    assert client.get(url).status_code == 404
    host.login(client, world["ada"])
    assert client.get(url).status_code == 200
    host.login(client, world["boss"])
    assert client.get(url).status_code == 200


# --- assignment -----------------------------------------------------------------------------

def test_assignable_agents_are_members_and_admins(host, world):
    from shared_inbox.services.tickets import assignable_agents

    with host.app.app_context():
        mb = host.db.session.get(host.inbox.models.Mailbox, world["support"])
        names = [u.name for u in assignable_agents(mb)]
    assert names == ["Ada", "Boss", "Cara"]


def test_assign_transfer_unassign_write_activity_and_flash(host, client, world):
    tok = as_user(host, client, world["ada"])
    url = f"/support/tickets/{world['ticket']}/assign"
    page = client.get(f"/support/tickets/{world['ticket']}").get_data(as_text=True)
    assert "Assign to me" in page and ">Ben<" not in page  # Ben cannot see support@

    r = client.post(url, data={"assignee_id": str(world["ada"]), "csrf_token": tok},
                    follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "is now assigned to Ada" in page and "Ada assigned to Ada" in page
    assert get_ticket(host, world["ticket"]).assignee_id == world["ada"]

    r = client.post(url, data={"assignee_id": str(world["cara"]), "csrf_token": tok},
                    follow_redirects=True)
    assert "Ada transferred from Ada to Cara" in r.get_data(as_text=True)
    r = client.post(url, data={"assignee_id": "", "csrf_token": tok}, follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "no longer assigned to Cara" in page and "Ada unassigned Cara" in page
    assert get_ticket(host, world["ticket"]).assignee_id is None
    actions = [a for a, _ in activities(host, world["ticket"])]
    assert actions == ["assigned", "transferred", "unassigned"]


def test_assigning_someone_who_cannot_see_the_mailbox_is_refused(host, client, world):
    tok = as_user(host, client, world["ada"])
    url = f"/support/tickets/{world['ticket']}/assign"
    for who in (world["ben"], world["shopper"]):
        r = client.post(url, data={"assignee_id": str(who), "csrf_token": tok},
                        follow_redirects=True)
        assert "cannot see the mailbox Support" in r.get_data(as_text=True)
    r = client.post(url, data={"assignee_id": "99999", "csrf_token": tok}, follow_redirects=True)
    assert "Choose an agent" in r.get_data(as_text=True)
    r = client.post(url, data={"assignee_id": "not-a-number", "csrf_token": tok},
                    follow_redirects=True)
    assert "Choose an agent" in r.get_data(as_text=True)
    assert get_ticket(host, world["ticket"]).assignee_id is None
    assert activities(host, world["ticket"]) == []


def test_admin_can_assign_to_an_admin(host, client, world):
    tok = as_user(host, client, world["boss"])
    r = client.post(f"/support/tickets/{world['other']}/assign",
                    data={"assignee_id": str(world["boss"]), "csrf_token": tok})
    assert r.status_code == 302
    assert get_ticket(host, world["other"]).assignee_id == world["boss"]


# --- snooze ---------------------------------------------------------------------------------

def test_snooze_in_the_future_then_unsnooze(host, client, world):
    tok = as_user(host, client, world["ada"])
    url = f"/support/tickets/{world['ticket']}"
    until = (utcnow() + timedelta(days=2)).replace(second=0, microsecond=0)
    r = client.post(f"{url}/snooze", data={"until": until.strftime("%Y-%m-%dT%H:%M"),
                                           "csrf_token": tok}, follow_redirects=True)
    page = r.get_data(as_text=True)
    assert f"snoozed until {until:%Y-%m-%d %H:%M} UTC" in page
    assert "Unsnooze" in page
    t = get_ticket(host, world["ticket"])
    assert t.status == "open" and t.snoozed_until == until
    # The inbox's Snoozed folder now holds it.
    folder = client.get("/support/?folder=snoozed").get_data(as_text=True)
    assert "Tent pole broke" in folder

    r = client.post(f"{url}/unsnooze", data={"csrf_token": tok}, follow_redirects=True)
    assert "no longer snoozed" in r.get_data(as_text=True)
    assert get_ticket(host, world["ticket"]).snoozed_until is None
    assert [a for a, _ in activities(host, world["ticket"])] == ["snoozed", "unsnoozed"]


def test_snooze_uses_the_browser_offset_when_given(host, client, world):
    tok = as_user(host, client, world["ada"])
    local = (utcnow() + timedelta(days=1)).replace(second=0, microsecond=0)
    client.post(f"/support/tickets/{world['ticket']}/snooze",
                data={"until": local.strftime("%Y-%m-%dT%H:%M"), "tz_offset": "-120",
                      "csrf_token": tok})
    assert get_ticket(host, world["ticket"]).snoozed_until == local - timedelta(hours=2)


@pytest.mark.parametrize("until", ["", "tomorrow", "2001-01-01T10:00",
                                   (utcnow() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")])
def test_snooze_must_be_a_time_in_the_future(host, client, world, until):
    tok = as_user(host, client, world["ada"])
    r = client.post(f"/support/tickets/{world['ticket']}/snooze",
                    data={"until": until, "csrf_token": tok}, follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "si-flash-error" in page and ("in the future" in page or "Enter a date" in page)
    assert get_ticket(host, world["ticket"]).snoozed_until is None
    assert activities(host, world["ticket"]) == []


def test_snoozing_a_closed_ticket_reopens_it(host, client, world):
    tok = as_user(host, client, world["ada"])
    url = f"/support/tickets/{world['ticket']}"
    client.post(f"{url}/status", data={"status": "closed", "csrf_token": tok})
    client.post(f"{url}/snooze", data={"until": "2999-01-01T09:00", "csrf_token": tok})
    t = get_ticket(host, world["ticket"])
    assert t.status == "open" and t.snoozed_until is not None and t.closed_at is None


def test_wake_snoozed_clears_due_tickets_only(host, world):
    from shared_inbox.services.tickets import wake_snoozed

    now = utcnow()
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        session.get(m.Ticket, world["ticket"]).snoozed_until = now - timedelta(minutes=1)
        session.get(m.Ticket, world["other"]).snoozed_until = now + timedelta(hours=1)
        session.commit()
        assert wake_snoozed(now) == [world["ticket"]]
        session.commit()
        assert wake_snoozed(now) == []
    assert get_ticket(host, world["ticket"]).snoozed_until is None
    assert get_ticket(host, world["other"]).snoozed_until is not None
    assert [a for a, _ in activities(host, world["ticket"])] == ["woke"]
    assert activities(host, world["other"]) == []


# --- merge ----------------------------------------------------------------------------------

def test_merge_moves_messages_closes_source_and_redirects(host, client, world):
    source = make_ticket(host, world["support"], "Pole again", bodies=("one", "two"))
    target = world["ticket"]
    tok = as_user(host, client, world["ada"])
    client.post(f"/support/tickets/{source}/tags", data={"name": "vip", "csrf_token": tok})
    r = client.post(f"/support/tickets/{source}/merge", data={"target": f"#{target}",
                                                               "csrf_token": tok})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/tickets/{target}")
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert f"was merged into #{target}" in page
    assert f">#{source}</a> into this ticket" in page
    assert "one" in page and "two" in page

    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        src, dst = session.get(m.Ticket, source), session.get(m.Ticket, target)
        assert src.merged_into_id == target and src.status == "closed"
        assert src.message_count == 0 and dst.message_count == 3
        assert {msg.body_text for msg in dst.messages} == {"Hello", "one", "two"}
        assert [t.name for t in dst.tags] == ["vip"]
    assert ("merged", {"into": target, "messages": 2}) in activities(host, source)
    assert ("merged_from", {"source": source, "messages": 2}) in activities(host, target)

    # The merged ticket's page sends the agent to the target, with a note.
    r = client.get(f"/support/tickets/{source}")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/tickets/{target}")
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert f"Ticket #{source} was merged into #{target}" in page
    page = client.get(f"/support/tickets/{source}?view=merged").get_data(as_text=True)
    assert "This ticket was merged into" in page and "merged into <a" in page


def test_merge_refusals(host, client, world):
    tok = as_user(host, client, world["ada"])
    ticket = world["ticket"]
    url = f"/support/tickets/{ticket}/merge"
    cases = [
        ("", "Enter the number"),
        ("abc", "Enter the number"),
        (str(ticket), "cannot be merged into itself"),
        (str(world["other"]), f"no ticket #{world['other']} you can see"),  # billing@
        ("424242", "no ticket #424242 you can see"),
        ("99999999999999999999", "you can see"),
    ]
    for target, message in cases:
        r = client.post(url, data={"target": target, "csrf_token": tok}, follow_redirects=True)
        assert message in r.get_data(as_text=True), target
    third = make_ticket(host, world["support"], "Third")
    client.post(f"/support/tickets/{third}/merge", data={"target": str(ticket), "csrf_token": tok})
    r = client.post(url, data={"target": str(third), "csrf_token": tok}, follow_redirects=True)
    assert "was itself merged into" in r.get_data(as_text=True)
    r = client.post(f"/support/tickets/{third}/merge",
                    data={"target": str(ticket), "csrf_token": tok}, follow_redirects=True)
    assert "already merged" in r.get_data(as_text=True)


def test_admin_merges_across_mailboxes(host, client, world):
    tok = as_user(host, client, world["boss"])
    r = client.post(f"/support/tickets/{world['other']}/merge",
                    data={"target": str(world["ticket"]), "csrf_token": tok})
    assert r.status_code == 302
    assert get_ticket(host, world["other"]).merged_into_id == world["ticket"]


# --- show images ----------------------------------------------------------------------------

def test_remote_images_stay_blocked_until_asked_for_one_message(host, client, world):
    html_ticket = make_ticket(host, world["support"], "Newsletter", bodies=("a", "b"),
                              html=REMOTE_HTML)
    with host.app.app_context():
        m = host.inbox.models
        msgs = host.db.session.scalars(sa.select(m.Message).where(
            m.Message.ticket_id == html_ticket).order_by(m.Message.id)).all()
        first = msgs[0].id
        msgs[1].body_html = REMOTE_HTML.replace("pixel", "second")
        host.db.session.commit()
    host.login(client, world["ada"])
    r = client.get(f"/support/tickets/{html_ticket}")
    page = r.get_data(as_text=True)
    assert not LIVE_SRC.search(page)
    assert "data-remote-src" in page and "Show images" in page
    assert "https:" not in r.headers["Content-Security-Policy"]
    # Each mail carries its own policy into its frame, on top of the page's.
    frame_csp = "default-src &#39;none&#39;; style-src &#39;unsafe-inline&#39;; img-src "
    assert page.count(f'content=&#34;{frame_csp}&#39;self&#39; data:;') == 2

    r = client.get(f"/support/tickets/{html_ticket}?images={first}")
    page = r.get_data(as_text=True)
    frames = page.split("<iframe")[1:]
    assert LIVE_SRC.findall(frames[0]) == ["https://tracker.example/pixel.png"]
    assert "data-remote-src" not in frames[0]
    assert "data-remote-src=&#34;https://tracker.example/second.png" in frames[1]
    assert not LIVE_SRC.search(frames[1])
    assert f"{frame_csp}&#39;self&#39; data: https: http:;" in frames[0]
    assert "https: http:" not in frames[1]
    assert "img-src 'self' data: https:" in r.headers["Content-Security-Policy"]
    assert "Block them again" in page
    # A message of another ticket (or nonsense) changes nothing.
    r = client.get(f"/support/tickets/{world['ticket']}?images={first}")
    assert "https:" not in r.headers["Content-Security-Policy"]
    assert client.get(f"/support/tickets/{html_ticket}?images=x").status_code == 200


# --- sidebar and newer messages -------------------------------------------------------------

def test_sidebar_shows_customer_and_their_visible_previous_conversations(host, client, world):
    now = utcnow()
    older = make_ticket(host, world["support"], "Old tent question", when=now - timedelta(days=9))
    newer = make_ticket(host, world["support"], "Newer stove question",
                        when=now - timedelta(days=1))
    make_ticket(host, world["support"], "Not hers", customer_email="bob@example.org")
    host.login(client, world["ada"])
    page = client.get(f"/support/tickets/{world['ticket']}").get_data(as_text=True)
    assert "Alice Smith" in page and "alice@example.org" in page
    prev = page.split("Previous conversations")[1].split("</ul>")[0]
    assert prev.index("Newer stove question") < prev.index("Old tent question")
    assert f"/support/tickets/{older}" in prev and f"/support/tickets/{newer}" in prev
    assert "Refund please" not in prev  # billing@, which Ada may not see
    assert "Not hers" not in prev and "Tent pole broke" not in prev
    host.login(client, world["boss"])
    page = client.get(f"/support/tickets/{world['ticket']}").get_data(as_text=True)
    assert "Refund please" in page.split("Previous conversations")[1].split("</ul>")[0]


def test_previous_conversations_are_capped_at_ten(host, world):
    from shared_inbox.services.tickets import previous_conversations

    for i in range(12):
        make_ticket(host, world["support"], f"Old {i}")
    with host.app.app_context():
        session = host.db.session
        t = session.get(host.inbox.models.Ticket, world["ticket"])
        assert len(previous_conversations(t, session.get(host.User, world["ada"]))) == 10


def test_newest_message_id_and_has_newer_messages(host, client, world):
    from shared_inbox.services.tickets import has_newer_messages

    host.login(client, world["ada"])
    page = client.get(f"/support/tickets/{world['ticket']}").get_data(as_text=True)
    seen = int(page.split('data-newest-message-id="')[1].split('"')[0])
    assert seen > 0
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        t = session.get(m.Ticket, world["ticket"])
        assert has_newer_messages(t, str(seen)) == []
        session.add(m.Message(ticket_id=t.id, mailbox_id=t.mailbox_id, kind="inbound",
                              body_text="Are you there?"))
        session.commit()
        newer = has_newer_messages(t, str(seen))
        assert [msg.body_text for msg in newer] == ["Are you there?"]
        assert len(has_newer_messages(t, 0)) == 2
        assert has_newer_messages(t, "") == [] and has_newer_messages(t, None) == []


def test_status_change_is_shown_readably(host, client, world):
    tok = as_user(host, client, world["ada"])
    r = client.post(f"/support/tickets/{world['ticket']}/status",
                    data={"status": "pending", "csrf_token": tok}, follow_redirects=True)
    assert "Ada changed status open → pending" in r.get_data(as_text=True)


# --- every action says what happened, "nothing" included ---------------------------------

def test_actions_that_change_nothing_still_say_so(host, client, world):
    """With in-place actions the flash is the only feedback: an action that changes nothing
    (status already set, same assignee, not snoozed, tag not there) says so too."""
    tok = as_user(host, client, world["ada"])
    base = f"/support/tickets/{world['ticket']}"

    def flash_after(path, **data):
        r = client.post(base + path, data=dict(data, csrf_token=tok), follow_redirects=True)
        assert r.status_code == 200
        return re.findall(r'<p class="si-flash si-flash-(\w+)" role="status">([^<]*)</p>',
                          r.get_data(as_text=True))

    assert flash_after("/status", status="open") == [("info", "Ticket #%d is already open."
                                                      % world["ticket"])]
    assert flash_after("/assign", assignee_id="") == [
        ("info", "Ticket #%d is not assigned to anyone." % world["ticket"])]
    assert flash_after("/assign", assignee_id=str(world["ada"]))[0][0] == "success"
    assert flash_after("/assign", assignee_id=str(world["ada"])) == [
        ("info", "Ticket #%d is already assigned to Ada." % world["ticket"])]
    assert flash_after("/unsnooze") == [("info", "Ticket #%d was not snoozed." % world["ticket"])]
    assert flash_after("/tags", name="vip")[0] == ("success", "Added tag vip.")
    with host.app.app_context():
        m = host.inbox.models
        vip = host.db.session.scalar(sa.select(m.Tag.id).where(m.Tag.name == "vip"))
    assert flash_after(f"/tags/{vip}/remove") == [("success", "Removed tag vip.")]
    assert flash_after(f"/tags/{vip}/remove") == [
        ("info", "The ticket does not have the tag vip.")]
    assert [a for a, _ in activities(host, world["ticket"])].count("status") == 0
