"""SLA policies and due times: hand-computed figures in Europe/Berlin business hours.

The mailbox works Mon-Fri 09:00-17:00 Berlin time (UTC+1 in November). Mail goes through the
real ingestion and automation; only the moment a message was received is set by the test.
"""
import re
from datetime import datetime, timedelta
from email import message_from_bytes, policy as email_policy

import pytest
import sqlalchemy as sa

from shared_inbox.services import sla
from shared_inbox.services.automation import process_one
from shared_inbox.services.ingest import ingest
from shared_inbox.services.outbox import deliver_due
from shared_inbox.services.replies import queue_reply
from shared_inbox.services.tags import add_tag, remove_tag
from shared_inbox.services.tickets import change_status
from test_poll import add_mailbox, mail

OFFICE = {str(d): [["09:00", "17:00"]] for d in range(5)}
FRIDAY_1630 = datetime(2026, 11, 20, 15, 30)  # Friday 20 Nov 2026, 16:30 in Berlin
MONDAY_0930 = datetime(2026, 11, 23, 8, 30)   # Monday 23 Nov, 09:30 in Berlin


@pytest.fixture
def shop(host, mail_server):
    """support@ with Berlin office hours and a 2h / 8h policy; Ada is an agent."""
    box = add_mailbox(host, mail_server, "support@example.com")
    with host.app.app_context():
        m = host.inbox.models
        mb = host.db.session.get(m.Mailbox, box)
        mb.smtp_host, mb.smtp_port, mb.smtp_security = "127.0.0.1", mail_server.smtp_port, "plain"
        mb.timezone, mb.business_hours = "Europe/Berlin", OFFICE
        host.db.session.add(m.SlaPolicy(name="Standard", position=1, first_response_minutes=120,
                                        resolution_minutes=8 * 60))
        host.db.session.commit()
    ada = host.add_user("ada@acme.test", name="Ada")
    with host.app.app_context():
        host.db.session.add(host.inbox.models.MailboxMember(mailbox_id=box, user_id=ada))
        host.db.session.commit()
    return box, ada


def receive(host, box, raw, at):
    """Ingest ``raw`` as received at ``at`` and run the automation steps on it."""
    with host.app.app_context():
        session = host.db.session
        mailbox = session.get(host.inbox.models.Mailbox, box)
        message = ingest(mailbox, raw)
        message.created_at = at
        if message.automation_state == "new":
            message.ticket.created_at = at
        session.commit()
        process_one(message.id, now=at)
        return message.ticket_id


def ticket_of(host, ticket_id):
    with host.app.app_context():
        ticket = host.db.session.get(host.inbox.models.Ticket, ticket_id)
        host.db.session.expunge(ticket)
        return ticket


def test_friday_afternoon_mail_is_due_monday_morning(host, shop):
    box, _ = shop
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    t = ticket_of(host, tid)
    # 30 business minutes on Friday, 90 on Monday: Monday 10:30 Berlin = 09:30 UTC.
    assert t.first_response_due_at == datetime(2026, 11, 23, 9, 30)
    # 8h: 30 minutes on Friday, 7h30 on Monday -> Monday 16:30 Berlin = 15:30 UTC.
    assert t.resolution_due_at == datetime(2026, 11, 23, 15, 30)
    assert t.sla_due_at == t.first_response_due_at
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, tid)
        assert sla.sla_state(t, datetime(2026, 11, 23, 8, 0)) == "ok"        # 90 min left
        assert sla.describe_due(t, datetime(2026, 11, 23, 8, 0)) == "due in 1h"
        assert sla.sla_state(t, datetime(2026, 11, 23, 8, 45)) == "soon"     # 45 min left
        assert sla.describe_due(t, datetime(2026, 11, 23, 8, 45)) == "due in 45 min"
        assert sla.sla_state(t, datetime(2026, 11, 23, 9, 30)) == "breached"
        assert sla.describe_due(t, datetime(2026, 11, 23, 12, 30)) == "breached 3h ago"
        host.app.config["SHARED_INBOX_SLA_SOON_MINUTES"] = 30
        assert sla.sla_state(t, datetime(2026, 11, 23, 8, 45)) == "ok"


def test_a_reply_meets_the_first_response_and_closing_the_resolution(host, shop):
    box, ada = shop
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    with host.app.app_context():
        m = host.inbox.models
        t = host.db.session.get(m.Ticket, tid)
        queue_reply(t, host.db.session.get(host.User, ada), "We send a new one.")
        host.db.session.commit()
        assert t.status == "pending" and t.first_response_at is not None
        # The response is met; the resolution still runs.
        assert t.sla_due_at == datetime(2026, 11, 23, 15, 30)
        assert sla.sla_state(t, datetime(2026, 11, 23, 12, 0)) == "ok"
        change_status(t, "closed")
        host.db.session.commit()
        assert t.sla_due_at is None
        assert sla.sla_state(t, datetime(2026, 11, 30)) is None


def test_the_response_clock_restarts_when_the_customer_writes_after_our_reply(host, shop):
    box, ada = shop
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    # A second mail before we answered keeps the first clock.
    receive(host, box, mail("Re: Broken kettle", msgid="k2", In_Reply_To="<k1@example.org>"),
            datetime(2026, 11, 23, 8, 0))
    assert ticket_of(host, tid).first_response_due_at == datetime(2026, 11, 23, 9, 30)
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, tid)
        queue_reply(t, host.db.session.get(host.User, ada), "Which model is it?")
        host.db.session.commit()
    # Monday 11:00 Berlin the customer answers: a reply is due 2 business hours later.
    receive(host, box, mail("Re: Broken kettle", msgid="k3", In_Reply_To="<k1@example.org>"),
            datetime(2026, 11, 23, 10, 0))
    t = ticket_of(host, tid)
    assert t.status == "open"
    assert t.first_response_due_at == datetime(2026, 11, 23, 12, 0)
    assert t.resolution_due_at == datetime(2026, 11, 23, 15, 30)  # not restarted
    assert t.sla_due_at == datetime(2026, 11, 23, 12, 0)
    # An out-of-office from the customer restarts nothing.
    receive(host, box, mail("Automatic reply: Broken kettle", msgid="k4",
                            In_Reply_To="<k1@example.org>", Auto_Submitted="auto-replied"),
            datetime(2026, 11, 23, 11, 0))
    assert ticket_of(host, tid).first_response_due_at == datetime(2026, 11, 23, 12, 0)


def test_a_reopened_ticket_is_a_new_request(host, shop):
    box, ada = shop
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, tid)
        queue_reply(t, host.db.session.get(host.User, ada), "Sent!", close=True)
        host.db.session.commit()
    # Tuesday 24 Nov 15:00 Berlin (14:00 UTC) the customer writes again.
    receive(host, box, mail("Re: Broken kettle", msgid="k2", In_Reply_To="<k1@example.org>"),
            datetime(2026, 11, 24, 14, 0))
    t = ticket_of(host, tid)
    assert t.status == "open"
    assert t.first_response_due_at == datetime(2026, 11, 24, 16, 0)   # Tue 17:00 Berlin
    assert t.resolution_due_at == datetime(2026, 11, 25, 14, 0)       # Wed 15:00 Berlin


def test_the_most_specific_policy_wins_then_the_position(host, shop):
    box, _ = shop
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        vip = m.Tag(name="vip")
        session.add(vip)
        session.flush()
        session.add_all([
            m.SlaPolicy(name="Support", position=5, mailbox_id=box, first_response_minutes=60),
            m.SlaPolicy(name="Urgent anywhere", position=2, priority="urgent",
                        first_response_minutes=30),
            m.SlaPolicy(name="Urgent support", position=9, mailbox_id=box, priority="urgent",
                        first_response_minutes=15),
            m.SlaPolicy(name="VIP", position=1, tag_id=vip.id, first_response_minutes=20),
            m.SlaPolicy(name="Off", position=0, mailbox_id=box, priority="urgent",
                        tag_id=vip.id, first_response_minutes=1, is_active=False),
        ])
        session.commit()
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, tid)
        assert sla.matching_policy(t).name == "Support"
        # Support: 60 minutes -> 30 on Friday, 30 on Monday: 09:30 Berlin = 08:30 UTC.
        assert t.first_response_due_at == MONDAY_0930
        t.priority = "urgent"
        assert sla.matching_policy(t).name == "Urgent support"
        t.priority = "normal"
        # "VIP" (tag) and "Support" (mailbox) are as specific: the lower position wins.
        add_tag(t, "vip")
        assert t.sla_policy_id == sla.matching_policy(t).id
        assert sla.matching_policy(t).name == "VIP"
        # Re-evaluated at once from the same start: 20 minutes -> Friday 16:50 Berlin.
        assert t.first_response_due_at == datetime(2026, 11, 20, 15, 50)
        remove_tag(t, t.tags[0])
        assert t.first_response_due_at == MONDAY_0930


def test_a_priority_change_re_evaluates_the_due_times(host, shop):
    box, _ = shop
    with host.app.app_context():
        host.db.session.add(host.inbox.models.SlaPolicy(
            name="Urgent", position=1, priority="urgent", first_response_minutes=30,
            resolution_minutes=120))
        host.db.session.commit()
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    with host.app.app_context():
        m = host.inbox.models
        t = host.db.session.get(m.Ticket, tid)
        assert sla.set_priority(t, "urgent") is True
        assert sla.set_priority(t, "urgent") is False
        host.db.session.commit()
        # 30 minutes: exactly Friday 17:00 Berlin; 120 minutes: Monday 10:30 Berlin.
        assert t.first_response_due_at == datetime(2026, 11, 20, 16, 0)
        assert t.resolution_due_at == datetime(2026, 11, 23, 9, 30)
        with pytest.raises(ValueError):
            sla.set_priority(t, "whenever")
        acts = host.db.session.scalars(sa.select(m.Activity.action).where(
            m.Activity.ticket_id == tid)).all()
        assert "priority" in acts


def test_no_policy_or_spam_means_no_due_time(host, shop):
    box, _ = shop
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.execute(sa.delete(m.SlaPolicy))
        host.db.session.commit()
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    t = ticket_of(host, tid)
    assert t.first_response_due_at is None and t.sla_due_at is None
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, tid)
        assert sla.sla_state(t, FRIDAY_1630) is None and sla.describe_due(t) == ""


def test_escalate_makes_urgent_and_mails_the_assignee_or_the_admins(host, shop, mail_server):
    box, ada = shop
    host.app.config["SHARED_INBOX_ADMIN_EMAILS"] = ["boss@acme.test"]
    first = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    second = receive(host, box, mail("Lost parcel", msgid="p1", sender="bob@example.org",
                                     name="Bob"), FRIDAY_1630)
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        t1, t2 = session.get(m.Ticket, first), session.get(m.Ticket, second)
        t1.assignee_id = ada
        session.flush()
        session.expire(t1, ["assignee"])
        assert sla.escalate(t1, now=FRIDAY_1630) is not None
        sla.escalate(t2, now=FRIDAY_1630)
        session.commit()
        assert t1.priority == t2.priority == "urgent"
        assert "escalated" in session.scalars(sa.select(m.Activity.action).where(
            m.Activity.ticket_id == first)).all()
        assert deliver_due(force=True).sent == 2
    sent = sorted(mail_server.wait_for_sent(2), key=lambda s: s.rcpt_tos)
    assert [s.rcpt_tos for s in sent] == [["ada@acme.test"], ["boss@acme.test"]]
    msg = message_from_bytes(sent[0].data, policy=email_policy.default)
    assert msg["Subject"] == f"[#{first}] Escalated: Broken kettle"
    assert "now urgent" in msg.get_content() and "alice@example.org" in msg.get_content()


def test_resolution_not_paused_while_pending_but_response_is(host, shop):
    box, ada = shop
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, tid)
        change_status(t, "pending")
        # Pending waits on the customer: no reply is owed, the resolution still runs.
        assert not sla.response_pending(t) and sla.resolution_pending(t)
        assert t.sla_due_at == datetime(2026, 11, 23, 15, 30)
        change_status(t, "open")
        assert t.sla_due_at == datetime(2026, 11, 23, 9, 30)
        assert sla.sla_state(t, datetime(2026, 11, 23, 9, 30) - timedelta(seconds=1)) == "soon"


# -- the inbox: "due soonest" sort and badges; the ticket page ------------------------------------
CSRF = "sla-test-token"


@pytest.fixture
def admin_client(host):
    from shared_inbox.csrf import SESSION_KEY

    admin = host.add_user("admin@acme.test", role="admin")
    client = host.app.test_client()
    host.login(client, admin)
    with client.session_transaction() as sess:
        sess[SESSION_KEY] = CSRF
    return client


def field_error(page, name):
    marker = f'id="si-{name}-error">'
    return page.split(marker, 1)[1].split("<", 1)[0] if marker in page else None


def test_inbox_sorts_by_due_time_with_badges_and_pages(host, shop, admin_client):
    from shared_inbox.models import utcnow

    box, _ = shop
    now = utcnow()
    due = {"Later": now + timedelta(hours=3, seconds=30), "Late": now - timedelta(minutes=61),
           "Soon": now + timedelta(minutes=30, seconds=30), "NoDueOld": None, "NoDueNew": None}
    ids = {}
    with host.app.app_context():
        m = host.inbox.models
        for i, (subject, at) in enumerate(due.items()):
            t = m.Ticket(mailbox_id=box, subject=subject, status="open",
                         last_message_at=now - timedelta(days=5 - i), sla_due_at=at,
                         resolution_due_at=at)
            host.db.session.add(t)
            host.db.session.flush()
            ids[subject] = t.id
        host.db.session.commit()
    host.app.config["SHARED_INBOX_PAGE_SIZE"] = 2
    seen, url, pages = [], "/support/?folder=open&sort=due", []
    while url:
        page = admin_client.get(url).get_data(as_text=True)
        pages.append(page)
        seen += [int(x) for x in re.findall(r'data-ticket="(\d+)"', page)]
        nxt = re.search(r'href="([^"]*after=[^"]*)"', page)
        url = nxt.group(1).replace("&amp;", "&") if nxt else None
    assert seen == [ids[s] for s in ("Late", "Soon", "Later", "NoDueOld", "NoDueNew")]
    assert "breached 1h ago" in pages[0] and "si-badge-warn" in pages[0]
    assert "due in 30 min" in pages[0] and "si-sla-soon" in pages[0]
    assert "due in 3h" in pages[1]
    assert "Due soonest" in pages[0]
    assert admin_client.get("/support/?sort=due&after=nonsense").status_code == 400


def test_ticket_page_shows_due_times_and_state(host, shop, admin_client):
    box, _ = shop
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    page = admin_client.get(f"/support/tickets/{tid}").get_data(as_text=True)
    assert "Reply due</dt><dd>2026-11-23 09:30 UTC" in page
    assert "Resolution due</dt><dd>2026-11-23 15:30 UTC" in page
    assert "Policy: Standard" in page and "breached" in page


# -- the settings ---------------------------------------------------------------------------------
def test_policy_settings_save_and_report_errors_beside_the_field(host, shop, admin_client):
    box, _ = shop
    assert "/support/settings/service-levels/" in admin_client.get("/support/settings/").get_data(
        as_text=True)
    page = admin_client.get("/support/settings/service-levels/").get_data(as_text=True)
    assert "Standard" in page and "2h" in page and "8h" in page
    data = {"csrf_token": CSRF, "name": "VIP support", "position": "3", "is_active": "1",
            "mailbox_id": str(box), "priority": "high", "tag_id": "",
            "first_response": "1h 30m", "resolution": ""}
    r = admin_client.post("/support/settings/service-levels/new",
                          data=dict(data, first_response="soonish", position="x"))
    page = r.get_data(as_text=True)
    assert r.status_code == 400
    assert field_error(page, "first_response") == "Write a duration like 2h, 1h 30m or 45m."
    assert field_error(page, "position") == "Enter a whole number (lower comes first)."
    assert 'value="soonish"' in page and 'value="VIP support"' in page  # input kept
    r = admin_client.post("/support/settings/service-levels/new",
                          data=dict(data, first_response="", mailbox_id="9999"))
    page = r.get_data(as_text=True)
    assert field_error(page, "first_response").startswith("Give a first-response target")
    assert field_error(page, "mailbox_id") == "Choose one of the options."
    assert admin_client.post("/support/settings/service-levels/new", data=data).status_code == 302
    with host.app.app_context():
        m = host.inbox.models
        p = host.db.session.scalar(sa.select(m.SlaPolicy).where(m.SlaPolicy.name == "VIP support"))
        assert (p.mailbox_id, p.priority, p.tag_id, p.first_response_minutes,
                p.resolution_minutes, p.position) == (box, "high", None, 90, None, 3)
        pid = p.id
    page = admin_client.get(f"/support/settings/service-levels/{pid}").get_data(as_text=True)
    assert 'value="1h 30m"' in page
    r = admin_client.post(f"/support/settings/service-levels/{pid}",
                          data=dict(data, resolution="24h", is_active=""))
    assert r.status_code == 302
    with host.app.app_context():
        p = host.db.session.get(host.inbox.models.SlaPolicy, pid)
        assert p.resolution_minutes == 24 * 60 and not p.is_active
    assert admin_client.post(f"/support/settings/service-levels/{pid}/delete",
                             data={"csrf_token": CSRF}).status_code == 302
    with host.app.app_context():
        assert host.db.session.get(host.inbox.models.SlaPolicy, pid) is None


def test_changing_a_policy_or_the_hours_re_times_open_tickets(host, shop, admin_client):
    """Editing the policy moves the due times of tickets already open (from the same
    starts); closed tickets keep theirs; a breach already mailed for an unchanged target is
    not mailed again; deleting the policy takes the targets away."""
    box, _ = shop
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    done = receive(host, box, mail("Thanks, all fine", msgid="k2"), FRIDAY_1630)
    breach_mailed = datetime(2026, 11, 23, 16, 0)
    with host.app.app_context():
        m = host.inbox.models
        change_status(host.db.session.get(m.Ticket, done), "closed")
        t = host.db.session.get(m.Ticket, tid)
        t.resolution_breached_at = breach_mailed
        host.db.session.commit()
        pid = host.db.session.scalar(sa.select(m.SlaPolicy.id))
    before_closed = ticket_of(host, done)
    data = {"csrf_token": CSRF, "name": "Standard", "position": "1", "is_active": "1",
            "mailbox_id": "", "priority": "", "tag_id": "", "first_response": "1h",
            "resolution": "8h"}
    r = admin_client.post(f"/support/settings/service-levels/{pid}", data=data,
                          follow_redirects=True)
    assert "SLA policy Standard saved. Due times of 1 open ticket updated." in r.get_data(
        as_text=True)
    t = ticket_of(host, tid)
    # 1h from Friday 16:30 Berlin: 30 min on Friday, 30 on Monday -> 09:30 Berlin.
    assert t.first_response_due_at == MONDAY_0930 == t.sla_due_at
    assert t.resolution_due_at == datetime(2026, 11, 23, 15, 30)  # unchanged 8h...
    assert t.resolution_breached_at == breach_mailed  # ...so its breach is not mailed again
    closed = ticket_of(host, done)
    assert closed.first_response_due_at == before_closed.first_response_due_at

    # Three working days to resolve: Friday 30 min + Monday + Tuesday + Wednesday 7h30.
    admin_client.post(f"/support/settings/service-levels/{pid}", data=dict(data, resolution="24h"))
    t = ticket_of(host, tid)
    assert t.resolution_due_at == datetime(2026, 11, 25, 15, 30)
    assert t.resolution_breached_at is None

    # Longer hours (08:00-18:00) move the due times of open tickets too.
    hours = {"csrf_token": CSRF, "timezone": "Europe/Berlin", "holidays": "",
             "auto_close_days": "", "auto_close_message": ""}
    for day in range(7):
        hours[f"day_{day}"] = "08:00-18:00" if day < 5 else ""
    r = admin_client.post(f"/support/settings/mailboxes/{box}/business-hours", data=hours,
                          follow_redirects=True)
    assert r.status_code == 200, field_error(r.get_data(as_text=True), "day_0")
    assert "Due times of 1 open ticket updated." in r.get_data(as_text=True)
    # 1h from Friday 16:30: 90 minutes are left on Friday -> 17:30 Berlin.
    assert ticket_of(host, tid).first_response_due_at == datetime(2026, 11, 20, 16, 30)

    r = admin_client.post(f"/support/settings/service-levels/{pid}/delete",
                          data={"csrf_token": CSRF}, follow_redirects=True)
    assert "Due times of 1 open ticket updated." in r.get_data(as_text=True)
    t = ticket_of(host, tid)
    assert (t.first_response_due_at, t.resolution_due_at, t.sla_due_at, t.sla_policy_id) == (
        None, None, None, None)

    # A policy added later applies to the tickets already waiting.
    r = admin_client.post("/support/settings/service-levels/new", data=dict(data, name="Again"),
                          follow_redirects=True)
    assert "SLA policy Again added. Due times of 1 open ticket updated." in r.get_data(
        as_text=True)
    assert ticket_of(host, tid).first_response_due_at == datetime(2026, 11, 20, 16, 30)


def test_business_hours_settings_save_and_report_errors(host, shop, admin_client):
    box, _ = shop
    url = f"/support/settings/mailboxes/{box}/business-hours"
    page = admin_client.get(url).get_data(as_text=True)
    assert 'value="Europe/Berlin"' in page and 'value="09:00-17:00"' in page
    data = {"csrf_token": CSRF, "timezone": "Europe/Lisbon", "day_0": "09:00-12:00, 13:00-18:00",
            "day_1": "09:00-17:00", "day_2": "", "day_3": "", "day_4": "", "day_5": "",
            "day_6": "", "holidays": "2026-12-25 Christmas\n2026-12-24",
            "auto_close_days": "7", "auto_close_message": "Closing, reply to reopen."}
    bad = dict(data, timezone="Berlin", day_1="17:00-09:00", holidays="Christmas",
               auto_close_days="0")
    r = admin_client.post(url, data=bad)
    page = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "not a time zone name" in field_error(page, "timezone")
    assert "the end must come after the start" in field_error(page, "day_1")
    assert field_error(page, "holidays").startswith("Line 1 (Christmas)")
    assert field_error(page, "auto_close_days").startswith("Enter a number of days from 1")
    assert 'value="17:00-09:00"' in page and 'value="Berlin"' in page
    assert admin_client.post(url, data=data).status_code == 302
    with host.app.app_context():
        from datetime import date

        from shared_inbox.services.business_hours import schedule_for

        m = host.inbox.models
        mb = host.db.session.get(m.Mailbox, box)
        assert mb.timezone == "Europe/Lisbon" and mb.auto_close_days == 7
        assert mb.business_hours == {"0": [["09:00", "12:00"], ["13:00", "18:00"]],
                                     "1": [["09:00", "17:00"]]}
        assert schedule_for(mb).holidays == {date(2026, 12, 24), date(2026, 12, 25)}
    # Global holidays, and emptying every day: always open.
    r = admin_client.post("/support/settings/service-levels/holidays",
                          data={"csrf_token": CSRF, "holidays": "2027-01-01 New year"})
    assert r.status_code == 302
    r = admin_client.post("/support/settings/service-levels/holidays",
                          data={"csrf_token": CSRF, "holidays": "01/01/2027"})
    assert r.status_code == 400 and "Line 1" in field_error(r.get_data(as_text=True), "holidays")
    admin_client.post(url, data=dict(data, day_0="", day_1="", auto_close_days=""))
    with host.app.app_context():
        mb = host.db.session.get(host.inbox.models.Mailbox, box)
        assert mb.business_hours is None and mb.auto_close_days is None
        from shared_inbox.services.business_hours import holidays_for
        assert date(2027, 1, 1) in holidays_for(mb)


def test_settings_are_for_admins_only_and_need_csrf(host, shop, admin_client):
    from shared_inbox.csrf import SESSION_KEY

    box, ada = shop
    client = host.app.test_client()
    host.login(client, ada)
    with client.session_transaction() as sess:
        sess[SESSION_KEY] = "agent-token"
    urls = ["/support/settings/service-levels/", "/support/settings/service-levels/new",
            "/support/settings/service-levels/1", f"/support/settings/mailboxes/{box}/business-hours"]
    for url in urls:
        assert client.get(url).status_code == 403
        assert client.post(url, data={"csrf_token": "agent-token"}).status_code in (403, 405)
    assert client.post("/support/settings/service-levels/1/delete",
                       data={"csrf_token": "agent-token"}).status_code == 403
    assert admin_client.post("/support/settings/service-levels/1/delete").status_code == 400
    assert admin_client.get("/support/settings/service-levels/999").status_code == 404
    assert admin_client.get("/support/settings/mailboxes/999/business-hours").status_code == 404
    with host.app.app_context():
        assert host.db.session.get(host.inbox.models.SlaPolicy, 1) is not None


def test_re_timing_starts_each_clock_where_the_ticket_alone_would(host, shop):
    """Re-timing reads the clock starts of all open tickets at once; each must be the one
    the single-ticket path finds: the customer's first message after our last reply (an
    out-of-office does not count), and the last reopening."""
    box, ada = shop
    t0 = datetime(2026, 11, 16, 9, 0)
    quiet = receive(host, box, mail("Never answered", msgid="q1"), t0)
    chatty = receive(host, box, mail("Answered, then asked again", msgid="c1"), t0)
    auto = receive(host, box, mail("Answered, then an out-of-office", msgid="a1"), t0)
    reopened = receive(host, box, mail("Closed and reopened twice", msgid="r1"), t0)
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        for tid, minutes in ((chatty, 30), (auto, 40), (reopened, 50)):
            session.add(m.Message(ticket_id=tid, mailbox_id=box, kind="outbound",
                                  author_id=ada, body_text="On it.",
                                  created_at=t0 + timedelta(minutes=minutes)))
        for tid, minutes, automated in ((chatty, 60, False), (chatty, 90, False),
                                        (chatty, 20, False), (auto, 70, True)):
            session.add(m.Message(ticket_id=tid, mailbox_id=box, kind="inbound",
                                  is_automated=automated, body_text="...",
                                  created_at=t0 + timedelta(minutes=minutes)))
        for minutes in (100, 200):
            session.add(m.Activity(ticket_id=reopened, action="reopened", detail={},
                                   created_at=t0 + timedelta(minutes=minutes)))
        session.commit()
        ids = [quiet, chatty, auto, reopened]
        replied, after, again = sla._clock_starts(
            sa.select(m.Ticket.id).where(m.Ticket.id.in_(ids)))
        for tid in ids:
            ticket = session.get(m.Ticket, tid)
            response = (after.get(tid) or ticket.created_at) if tid in replied \
                else ticket.created_at
            assert response == sla._response_clock_start(ticket), tid
            assert (again.get(tid) or ticket.created_at) == sla._resolution_clock_start(ticket)
        assert after == {chatty: t0 + timedelta(minutes=60)}
        assert again == {reopened: t0 + timedelta(minutes=200)}
        assert set(replied) == {chatty, auto, reopened}
