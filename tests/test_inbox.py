"""The inbox list: folders and counts, filters, sorts with keyset pagination, unread state,
bulk actions and a constant number of queries per page."""
import re
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

T0 = datetime(2024, 5, 1, 12, 0, 0)


class World:
    """Hand-made mailboxes, agents and tickets in one host."""

    def __init__(self, host):
        self.host = host
        self.admin = host.add_user("boss@x.test", role="admin", name="Boss")
        self.ada = host.add_user("ada@x.test", name="Ada")
        self.ben = host.add_user("ben@x.test", name="Ben")
        self.support = self.mailbox("Support", "support@x.test", members=[self.ada, self.ben])
        self.billing = self.mailbox("Billing", "billing@x.test", members=[self.ben])
        self._n = 0

    def mailbox(self, name, address, members=()):
        with self.host.app.app_context():
            m = self.host.inbox.models
            mb = m.Mailbox(name=name, email_address=address)
            self.host.db.session.add(mb)
            self.host.db.session.flush()
            for uid in members:
                self.host.db.session.add(m.MailboxMember(mailbox_id=mb.id, user_id=uid))
            self.host.db.session.commit()
            return mb.id

    def ticket(self, subject, *, mailbox=None, status="open", assignee=None, minutes=0,
               inbound=None, outbound=None, snoozed=None, tags=(), body=None,
               customer=("Carla Customer", None), merged_into=None):
        """A ticket with one inbound message; ``minutes`` after T0 is its last activity."""
        self._n += 1
        with self.host.app.app_context():
            m = self.host.inbox.models
            s = self.host.db.session
            name, email = customer
            email = email or f"cust{self._n}@example.org"
            cust = s.scalar(sa.select(m.Customer).where(m.Customer.email == email))
            if cust is None:
                cust = m.Customer(email=email, name=name)
                s.add(cust)
            last = T0 + timedelta(minutes=minutes)
            t = m.Ticket(
                mailbox_id=mailbox or self.support, customer=cust, subject=subject,
                status=status, assignee_id=assignee, snippet=(body or subject)[:50],
                created_at=last, last_message_at=last,
                last_inbound_at=last if inbound is None else inbound,
                last_outbound_at=outbound, merged_into_id=merged_into,
                snoozed_until=snoozed,
            )
            for tag_name in tags:
                tag = s.scalar(sa.select(m.Tag).where(m.Tag.name == tag_name))
                t.tags.append(tag or m.Tag(name=tag_name))
            s.add(t)
            s.flush()
            s.add(m.Message(ticket_id=t.id, mailbox_id=t.mailbox_id, kind="inbound",
                            subject=subject, body_text=body or subject, from_name=name,
                            from_email=email, date=last, created_at=last))
            s.commit()
            return t.id

    def tag_id(self, name):
        with self.host.app.app_context():
            m = self.host.inbox.models
            return self.host.db.session.scalar(sa.select(m.Tag.id).where(m.Tag.name == name))

    def client(self, user):
        c = self.host.app.test_client()
        self.host.login(c, user)
        return c


@pytest.fixture
def world(host):
    return World(host)


def ids_on(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-ticket="(\d+)"', page)]


def row_of(page: str, ticket_id: int) -> str:
    return page.split(f'data-ticket="{ticket_id}"')[1].split("</tr>")[0]


def get(client, **params):
    r = client.get("/support/", query_string={k: v for k, v in params.items() if v is not None})
    assert r.status_code == 200, r.status_code
    return r.get_data(as_text=True)


def counts_on(page: str) -> dict:
    nav = page.split('aria-label="Folders"')[1].split("</nav>")[0]
    return {label: int(n) for label, n in re.findall(
        r'>([A-Za-z ]+) <span class="si-count">(\d+)</span>', nav)}


def next_link(page: str):
    match = re.search(r'class="si-next" rel="next" href="([^"]+)"', page)
    return match.group(1).replace("&amp;", "&") if match else None


def csrf(client) -> str:
    page = get(client)
    return page.split('name="csrf_token" value="')[1].split('"')[0]


# ------------------------------------------------------------------------- folders

def test_every_folder_content_and_counts(world):
    w = world
    future = datetime.utcnow() + timedelta(days=2)
    past = datetime.utcnow() - timedelta(days=2)
    unassigned = w.ticket("unassigned one", minutes=1)
    woke = w.ticket("snooze over", minutes=2, snoozed=past)
    mine = w.ticket("mine open", assignee=w.ada, minutes=3)
    mine_pending = w.ticket("mine pending", assignee=w.ada, status="pending", minutes=4)
    bens = w.ticket("ben's", assignee=w.ben, minutes=5)
    pending = w.ticket("pending one", status="pending", minutes=6)
    snoozed = w.ticket("snoozed one", snoozed=future, minutes=7)
    closed = w.ticket("closed one", status="closed", minutes=8)
    spam = w.ticket("spam one", status="spam", minutes=9)
    w.ticket("merged away", minutes=10, merged_into=unassigned)
    w.ticket("other mailbox", mailbox=w.billing, minutes=11)

    c = w.client(w.ada)
    expected = {
        "unassigned": [woke, unassigned],
        "mine": [mine_pending, mine],
        "assigned": [bens, mine],
        "open": [bens, mine, woke, unassigned],
        "pending": [pending, mine_pending],
        "snoozed": [snoozed],
        "closed": [closed],
        "spam": [spam],
    }
    for folder, ids in expected.items():
        assert ids_on(get(c, folder=folder)) == ids, folder
    assert counts_on(get(c)) == {
        "Unassigned": 2, "Mine": 2, "Assigned": 2, "All open": 4, "Pending": 2,
        "Snoozed": 1, "Closed": 1, "Spam": 1}
    assert c.get("/support/?folder=nope").status_code == 404

    # Ben sees both mailboxes; the mailbox filter narrows counts and rows.
    b = w.client(w.ben)
    assert counts_on(get(b))["All open"] == 5
    page = get(b, mailbox=w.billing)
    assert counts_on(page)["All open"] == 1 and "other mailbox" in page and "ben&#39;s" not in page
    # Ada asking for a mailbox she may not see gets nothing from it.
    page = get(c, mailbox=w.billing)
    assert ids_on(page) == [] and counts_on(page)["All open"] == 0


def test_filters_tag_assignee_mailbox_status(world):
    w = world
    a = w.ticket("tagged vip", tags=["vip"], minutes=1)
    b = w.ticket("tagged both", tags=["vip", "refund"], assignee=w.ben, minutes=2)
    c_ = w.ticket("untagged", assignee=w.ada, minutes=3)
    d = w.ticket("billing vip", mailbox=w.billing, tags=["vip"], minutes=4)
    c = w.client(w.ben)
    assert ids_on(get(c, tag=w.tag_id("vip"))) == [d, b, a]
    assert ids_on(get(c, tag=w.tag_id("refund"))) == [b]
    assert ids_on(get(c, assignee=w.ada)) == [c_]
    assert ids_on(get(c, assignee="none")) == [d, a]
    assert ids_on(get(c, assignee="not-a-user")) == []
    assert ids_on(get(c, mailbox=w.support, tag=w.tag_id("vip"))) == [b, a]
    assert ids_on(get(c, folder="assigned", status="open")) == [c_, b]
    assert ids_on(get(c, folder="closed", status="open")) == []


@pytest.mark.parametrize("sort", ["newest", "oldest", "waiting"])
def test_each_sort_paginates_without_repeats_or_gaps(world, sort):
    w = world
    w.host.app.config["SHARED_INBOX_PAGE_SIZE"] = 4
    made = {}
    for i in range(11):
        # Several tickets share a timestamp, to exercise the id tie-break.
        minute = i // 2
        answered = i % 3 == 0
        inbound = T0 + timedelta(minutes=20 - minute)
        tid = w.ticket(f"ticket {i}", minutes=minute, inbound=inbound,
                       outbound=inbound + timedelta(minutes=1) if answered else None)
        made[tid] = (minute, not answered, inbound)
    c = w.client(w.admin)
    seen, url, pages = [], None, 0
    while True:
        page = c.get(url).get_data(as_text=True) if url else get(c, sort=sort)
        seen += ids_on(page)
        pages += 1
        url = next_link(page)
        if not url:
            break
        assert f"sort={sort}" in url or sort == "newest"
    assert pages == 3 and len(seen) == len(set(seen)) == 11
    if sort == "newest":
        expected = sorted(made, key=lambda t: (made[t][0], t), reverse=True)
    elif sort == "oldest":
        expected = sorted(made, key=lambda t: (made[t][0], t))
    else:
        expected = sorted(made, key=lambda t: (
            not made[t][1], made[t][2] if made[t][1] else T0 + timedelta(minutes=made[t][0]), t))
        assert seen[0] in [t for t in made if made[t][1]]
    assert seen == expected


def test_bad_cursor_is_a_400(world):
    c = world.client(world.admin)
    assert c.get("/support/?after=garbage").status_code == 400
    assert c.get("/support/?sort=waiting&after=2024-01-01T00:00:00_3").status_code == 400


def test_rows_show_customer_tags_assignee_and_waiting_marker(world):
    w = world
    tent = w.ticket("Tent pole broke", tags=["urgent"], assignee=w.ben,
                    customer=("Dora Diaz", "dora@example.org"))
    answered = w.ticket("Answered", outbound=T0 + timedelta(hours=1), minutes=60)
    page = get(w.client(w.ada))
    row = row_of(page, tent)
    assert "Dora Diaz" in row and "urgent" in row and "Ben" in row and "si-waiting-mark" in row
    assert "Tent pole broke" in row and "Support" in row
    assert "si-waiting-mark" not in row_of(page, answered)
    assert 'class="si-sr-only">Select conversation' in page


# --------------------------------------------------------------------------- unread

def test_unread_is_bold_until_mark_read_and_again_after_a_new_message(world):
    from shared_inbox.services.reading import mark_read, unread_ticket_ids

    w = world
    tid = w.ticket("Hello there")
    c = w.client(w.ada)
    assert "si-unread" in get(c)
    with w.host.app.app_context():
        m = w.host.inbox.models
        ticket = w.host.db.session.get(m.Ticket, tid)
        ada = w.host.db.session.get(w.host.User, w.ada)
        mark_read(ticket, ada)
        mark_read(ticket, ada)  # an upsert: no duplicate row
        assert w.host.db.session.scalar(sa.select(sa.func.count(m.TicketRead.id))) == 1
        assert unread_ticket_ids([ticket], ada) == set()
    assert "si-unread" not in get(c)
    # Still unread for Ben, who has not opened it.
    assert "si-unread" in get(w.client(w.ben))
    with w.host.app.app_context():
        m = w.host.inbox.models
        ticket = w.host.db.session.get(m.Ticket, tid)
        ticket.last_message_at = datetime.utcnow() + timedelta(minutes=5)
        w.host.db.session.commit()
    assert "si-unread" in get(c)


# ----------------------------------------------------------------------------- bulk

def _activity(host, action):
    with host.app.app_context():
        m = host.inbox.models
        return [(a.ticket_id, a.detail) for a in host.db.session.scalars(
            sa.select(m.Activity).where(m.Activity.action == action).order_by(m.Activity.id))]


def _tickets(host):
    with host.app.app_context():
        m = host.inbox.models
        return {t.id: t for t in host.db.session.scalars(
            sa.select(m.Ticket).options(sa.orm.selectinload(m.Ticket.tags)))}


def test_bulk_actions_change_only_visible_tickets_and_write_activity(world):
    w = world
    mine1 = w.ticket("one", minutes=1)
    mine2 = w.ticket("two", minutes=2, status="pending")
    hidden = w.ticket("billing secret", mailbox=w.billing, minutes=3)
    c = w.client(w.ada)
    token = csrf(c)

    def post(action):
        r = c.post("/support/bulk", data={
            "csrf_token": token, "action": action, "ticket": [str(mine1), str(mine2), str(hidden)],
            "return_to": "/support/?folder=open"}, follow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"].endswith("/support/?folder=open")
        return get(c)

    page = post(f"assign:{w.ben}")
    assert "2 tickets updated" in page
    t = _tickets(w.host)
    assert t[mine1].assignee_id == t[mine2].assignee_id == w.ben and t[hidden].assignee_id is None
    assert sorted(tid for tid, _ in _activity(w.host, "assigned")) == [mine1, mine2]

    assert "2 tickets updated" in post("unassign")
    assert _tickets(w.host)[mine1].assignee_id is None

    w.ticket("tag holder", tags=["vip"], minutes=0, status="closed")
    assert "2 tickets updated" in post(f"tag:{w.tag_id('vip')}")
    assert "0 tickets updated" in post(f"tag:{w.tag_id('vip')}")  # already tagged
    t = _tickets(w.host)
    assert [x.name for x in t[mine1].tags] == ["vip"] and t[hidden].tags == []

    assert "2 tickets updated" in post("status:closed")
    t = _tickets(w.host)
    assert t[mine1].status == t[mine2].status == "closed" and t[hidden].status == "open"
    assert "2 tickets updated" in post("spam")
    assert _tickets(w.host)[hidden].status == "open"
    statuses = _activity(w.host, "status")
    assert {tid for tid, _ in statuses} == {mine1, mine2}
    assert len(statuses) == 4  # closed x2, spam x2 (one row per ticket changed)

    # Assigning to someone who may not see the mailbox does nothing.
    b_only = w.host.add_user("bill@x.test", name="Bill")
    with w.host.app.app_context():
        w.host.db.session.add(w.host.inbox.models.MailboxMember(mailbox_id=w.billing, user_id=b_only))
        w.host.db.session.commit()
    assert "0 tickets updated" in post(f"assign:{b_only}")
    # Unknown actions and foreign return addresses.
    assert c.post("/support/bulk", data={"csrf_token": token, "action": "delete",
                                         "ticket": [str(mine1)]}).status_code == 400
    r = c.post("/support/bulk", data={"csrf_token": token, "action": "unassign",
                                      "ticket": [str(mine1)], "return_to": "https://evil.test/"})
    assert r.headers["Location"] == "/support/"


def test_bulk_needs_csrf(world):
    w = world
    tid = w.ticket("one")
    c = w.client(w.ada)
    r = c.post("/support/bulk", data={"action": "status:closed", "ticket": [str(tid)]})
    assert r.status_code == 400
    r = c.post("/support/bulk", data={"action": "status:closed", "ticket": [str(tid)],
                                      "csrf_token": "forged"})
    assert r.status_code == 400
    assert _tickets(w.host)[tid].status == "open"
    assert _activity(w.host, "status") == []


# -------------------------------------------------------------------------- queries

@contextmanager
def count_queries(host):
    statements = []

    def _count(conn, cursor, statement, *args):
        statements.append(statement)

    with host.app.app_context():
        engine = host.db.engine
    sa.event.listen(engine, "before_cursor_execute", _count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", _count)


@pytest.mark.parametrize("who", ["admin", "ada"])
def test_same_number_of_queries_for_10_and_50_rows(world, who):
    w = world
    for i in range(60):
        w.ticket(f"t{i}", assignee=[None, w.ada, w.ben][i % 3], tags=[["a"], ["b"], []][i % 3],
                 minutes=i, customer=(f"C {i}", None))
    c = w.client(getattr(w, who))
    figures = {}
    for size in (10, 50):
        w.host.app.config["SHARED_INBOX_PAGE_SIZE"] = size
        for params in ({}, {"q": "t1"}, {"sort": "waiting"}):
            with count_queries(w.host) as statements:
                page = get(c, **params)
            if not params:
                assert len(ids_on(page)) == size
            figures[(size, tuple(params))] = len(statements)
    for params in ({}, {"q": "t1"}, {"sort": "waiting"}):
        assert figures[(10, tuple(params))] == figures[(50, tuple(params))], figures
    assert figures[(50, ())] <= 12, figures


def test_opening_a_ticket_marks_it_read_for_that_agent_only(host):
    """The ticket view records the read; the inbox then shows it as read for that agent."""
    import re as _re

    from shared_inbox.models import utcnow

    with host.app.app_context():
        m = host.inbox.models
        box = m.Mailbox(name="Support", email_address="support@x.test")
        t = m.Ticket(mailbox=box, subject="Unread until opened", last_message_at=utcnow())
        host.db.session.add(t)
        host.db.session.commit()
        ticket_id = t.id
    ada, ben = host.add_user("ada@x.test", role="admin"), host.add_user("ben@x.test", role="admin")
    a, b = host.app.test_client(), host.app.test_client()
    host.login(a, ada)
    host.login(b, ben)

    def row_classes(client):
        page = client.get("/support/").get_data(as_text=True)
        return _re.search(r'<tr class="([^"]*)"[^>]*>(?:(?!</tr>).)*Unread until opened', page, _re.S).group(1)

    assert "unread" in row_classes(a)
    assert a.get(f"/support/tickets/{ticket_id}").status_code == 200
    assert "unread" not in row_classes(a)
    assert "unread" in row_classes(b)


def test_cached_folder_counts_follow_changes(world):
    """The per-process counts cache is checked against max(id)/max(updated_at)."""
    w = world
    tid = w.ticket("one", minutes=1)
    c = w.client(w.ada)
    assert counts_on(get(c))["All open"] == 1
    assert counts_on(get(c))["All open"] == 1  # served from the cache
    w.ticket("two", minutes=2)
    assert counts_on(get(c))["All open"] == 2
    with w.host.app.app_context():
        t = w.host.db.session.get(w.host.inbox.models.Ticket, tid)
        t.status = "closed"
        w.host.db.session.commit()
    counts = counts_on(get(c))
    assert counts["All open"] == 1 and counts["Closed"] == 1
    # A snoozed ticket waking up changes the counts without any write.
    with w.host.app.app_context():
        t = w.host.db.session.get(w.host.inbox.models.Ticket, tid)
        t.status, t.snoozed_until = "open", datetime.utcnow() + timedelta(seconds=1)
        w.host.db.session.commit()
    assert counts_on(get(c))["Snoozed"] == 1
    import time
    time.sleep(1.1)
    counts = counts_on(get(c))
    assert counts["Snoozed"] == 0 and counts["All open"] == 2
