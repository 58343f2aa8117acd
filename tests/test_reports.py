"""Reports: figures over seeded tickets with known timestamps, checked against hand-worked
values (business hours across nights and weekends), the page, CSV exports, access, and the
weekly summary sent once per week."""
import csv
import io
import threading
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from shared_inbox.services.reports import (
    TICKET_COLUMNS, Figures, Report, compute_report, iter_tickets_csv, percentile,
    send_weekly_summary,
)

CSRF = "test-csrf-token"
MON = date(2026, 3, 2)   # a Monday
SUN = date(2026, 3, 8)
NOW = datetime(2026, 3, 10, 12, 0)
OFFICE = {str(d): [["09:00", "17:00"]] for d in range(5)}  # Mon-Fri 09:00-17:00 UTC


def at(day, hh, mm=0, month=3):
    return datetime(2026, month, day, hh, mm)


def seed(host):
    """Support (office hours, Ada) and sales (always open, Ben); the tickets of the docstring
    table below. Returns ids."""
    ada = host.add_user("ada@x.test", name="Ada")
    ben = host.add_user("ben@x.test", name="Ben")
    boss = host.add_user("boss@x.test", role="admin", name="Boss")
    with host.app.app_context():
        m = host.inbox.models
        s = host.db.session
        support = m.Mailbox(name="Support", email_address="support@x.test", timezone="UTC",
                            business_hours=OFFICE)
        sales = m.Mailbox(name="Sales", email_address="sales@x.test")
        vip, refund = m.Tag(name="vip"), m.Tag(name="refund")
        s.add_all([support, sales, vip, refund])
        s.flush()
        s.add_all([m.MailboxMember(mailbox_id=support.id, user_id=ada),
                   m.MailboxMember(mailbox_id=sales.id, user_id=ben)])
        customer = m.Customer(email="cus@example.org", name="Cus")
        s.add(customer)
        s.flush()
        ids = {}

        def ticket(key, mailbox, assignee, created, *, first=None, closed=None, status=None,
                   tags=(), replies=(), fr_due=None, res_due=None, rating=None, waiting=False,
                   **extra):
            t = m.Ticket(mailbox_id=mailbox.id, customer_id=customer.id, subject=f"T {key}",
                         assignee_id=assignee, created_at=created, last_message_at=created,
                         first_response_at=first, closed_at=closed,
                         status=status or ("closed" if closed else "pending"),
                         first_response_due_at=fr_due, resolution_due_at=res_due,
                         last_inbound_at=created,
                         last_outbound_at=None if waiting else (first or None), **extra)
            t.tags = list(tags)
            s.add(t)
            s.flush()
            s.add(m.Message(ticket_id=t.id, mailbox_id=mailbox.id, kind="inbound",
                            from_email=customer.email, date=created, created_at=created))
            for author, when in replies:
                s.add(m.Message(ticket_id=t.id, mailbox_id=mailbox.id, kind="outbound",
                                author_id=author, date=when, created_at=when,
                                thread_reason="reply by an agent"))
            if rating:
                s.add(m.SatisfactionRating(ticket_id=t.id, rating=rating[0], comment="",
                                           created_at=rating[1], updated_at=rating[1]))
            ids[key] = t.id
            return t

        # T1: Mon 10:00 -> answered 10:30 -> closed 12:00 with one reply (first contact).
        t1 = ticket("T1", support, ada, at(2, 10), first=at(2, 10, 30), closed=at(2, 12),
                    tags=[vip], replies=[(ada, at(2, 10, 30))], fr_due=at(2, 11),
                    res_due=at(2, 11, 30), rating=("great", at(2, 13)))
        # T2: Thu 16:30 -> answered Fri 09:30 (overnight: 1 business hour, 17 wall hours),
        # closed Fri 10:00 after two replies.
        ticket("T2", support, ada, at(5, 16, 30), first=at(6, 9, 30), closed=at(6, 10),
               replies=[(ada, at(6, 9, 30)), (ada, at(6, 9, 50))], fr_due=at(6, 9),
               rating=("great", at(6, 11)))
        # T3: Saturday 11:00, unassigned, answered the next Monday 09:15 (outside the range):
        # 15 business minutes over the weekend.
        ticket("T3", support, None, at(7, 11), first=at(9, 9, 15), tags=[vip, refund],
               replies=[(ada, at(9, 9, 15))], fr_due=at(20, 9))
        # T4: sales (no hours), Fri 22:00 -> Sat 01:00 -> closed Sun 22:00, one reply.
        ticket("T4", sales, ben, at(6, 22), first=at(7, 1), closed=at(8, 22), tags=[refund],
               replies=[(ben, at(7, 1))], res_due=at(9, 22), rating=("bad", at(8, 23)))
        # T5: sales, Tue 09:00, never answered: waiting; its first-response target has passed.
        ticket("T5", sales, ben, at(3, 9), status="open", waiting=True, fr_due=at(3, 10),
               res_due=datetime(2099, 1, 1))
        # T6: created two weeks before, closed Wed 12:00 without a reply: 64 business hours.
        ticket("T6", support, ada, at(20, 12, month=2), closed=at(4, 12),
               rating=("okay", at(28, 12, month=2)))
        # Left out: spam, a merged ticket, one after the range, a snoozed waiting one.
        ticket("spam", sales, ben, at(3, 12), status="spam", replies=[(ben, at(3, 13))])
        ticket("merged", support, ada, at(3, 12), first=at(3, 13), merged_into_id=t1.id)
        ticket("later", sales, ben, at(9, 12))
        ticket("snoozed", sales, ben, at(1, 12, month=2), status="open", waiting=True,
               snoozed_until=datetime(2027, 1, 1))
        # Not agent replies: a forward and an automatic reply, inside the range.
        s.add(m.Message(ticket_id=t1.id, mailbox_id=support.id, kind="outbound", author_id=ada,
                        created_at=at(2, 11), thread_reason="forwarded to x@y.test"))
        s.add(m.Message(ticket_id=t1.id, mailbox_id=support.id, kind="outbound",
                        created_at=at(2, 10, 1), thread_reason="auto-reply"))
        s.commit()
        ids.update(support=support.id, sales=sales.id, vip=vip.id, refund=refund.id)
    ids.update(ada=ada, ben=ben, boss=boss)
    return ids


def report(host, **kw):
    with host.app.app_context():
        try:
            return compute_report(MON, SUN, now=NOW, **kw)
        finally:
            host.db.session.remove()


def by_label(figures):
    return {f.label: f for f in figures}


def test_percentiles_interpolate_between_the_nearest_values():
    assert percentile([], 0.5) is None
    assert percentile([10, 1, 3, 2], 0.5) == 2.5
    assert percentile([900, 1800, 3600, 10800], 0.9) == pytest.approx(8640)
    assert percentile([7], 0.9) == 7


def test_figures_match_the_hand_worked_values_with_business_hours(host):
    seed(host)
    r = report(host)
    t = r.total
    assert r.business_hours
    assert (t.new, t.closed, t.replies, t.waiting) == (5, 4, 4, 1)
    # First response in business seconds: T1 1800, T2 3600 (16:30-17:00 + 09:00-09:30),
    # T3 900 (weekend skipped), T4 10800 (sales has no hours: wall clock).
    assert sorted(t.first_response) == [900, 1800, 3600, 10800]
    assert t.first_response_median == 2700
    assert t.first_response_p90 == pytest.approx(8640)
    # Resolution: T1 7200, T2 5400 (30 min Thu + 60 min Fri), T4 172800 (wall),
    # T6 64 business hours (Fri 5 h + 5 x 8 h + Mon, Tue 16 h + Wed 3 h).
    assert sorted(t.resolution) == [5400, 7200, 172800, 230400]
    assert t.resolution_median == 90000
    assert t.resolution_p90 == pytest.approx(213120)
    assert t.fcr_rate == 0.5  # T1 and T4 of the 4 closed
    # SLA: T1 first response met, T1 resolution missed, T2 missed, T3 met (answered later but
    # before its due time), T4 resolution met, T5 first response missed; T5 resolution still
    # running is not counted.
    assert (t.sla_met, t.sla_decided) == (3, 6)
    # CSAT: T1 great, T2 great, T4 bad in the range; T6's rating is older.
    assert (t.ratings["great"], t.ratings["bad"], t.ratings["okay"]) == (2, 1, 0)
    assert t.csat == pytest.approx(2 / 3)

    mb = by_label(r.by_mailbox)
    assert (mb["Support"].new, mb["Support"].closed, mb["Support"].replies) == (3, 3, 3)
    assert mb["Support"].first_response_median == 1800
    assert mb["Support"].first_response_p90 == pytest.approx(3240)
    assert mb["Support"].resolution_median == 7200
    assert mb["Support"].resolution_p90 == pytest.approx(185760)
    assert mb["Support"].fcr_rate == pytest.approx(1 / 3)
    assert (mb["Sales"].new, mb["Sales"].closed, mb["Sales"].replies, mb["Sales"].waiting) == \
        (2, 1, 1, 1)
    assert mb["Sales"].fcr_rate == 1.0 and mb["Sales"].csat == 0.0

    ag = by_label(r.by_agent)
    assert list(ag) == ["Ada", "Ben", "Unassigned"]
    assert (ag["Ada"].new, ag["Ada"].closed, ag["Ada"].replies) == (2, 3, 3)
    assert ag["Ada"].first_response_median == 2700
    assert (ag["Ben"].new, ag["Ben"].closed, ag["Ben"].replies, ag["Ben"].waiting) == (2, 1, 1, 1)
    assert (ag["Unassigned"].new, ag["Unassigned"].first_response) == (1, [900])

    tg = by_label(r.by_tag)
    assert (tg["vip"].new, tg["vip"].closed, tg["vip"].first_response_median) == (2, 1, 1350)
    assert (tg["refund"].new, tg["refund"].closed, tg["refund"].first_response_median) == \
        (2, 1, 5850)
    assert tg["vip"].replies == 1 and tg["refund"].replies == 1

    per_day = {d.day: (d.new, d.closed) for d in r.days}
    assert per_day == {date(2026, 3, 2): (1, 1), date(2026, 3, 3): (1, 0),
                       date(2026, 3, 4): (0, 1), date(2026, 3, 5): (1, 0),
                       date(2026, 3, 6): (1, 1), date(2026, 3, 7): (1, 0),
                       date(2026, 3, 8): (0, 1)}
    assert r.days[0].first_response_median == 1800
    assert r.heatmap[0][10] == 1 and r.heatmap[5][11] == 1 and sum(map(sum, r.heatmap)) == 5


def test_without_business_hours_nights_and_weekends_count(host):
    ids = seed(host)
    with host.app.app_context():
        host.db.session.get(host.inbox.models.Mailbox, ids["support"]).business_hours = None
        host.db.session.commit()
    r = report(host)
    assert not r.business_hours
    # T2 waited 17 hours overnight, T3 46 h 15 min over the weekend.
    assert sorted(r.total.first_response) == [1800, 10800, 61200, 166500]
    assert r.total.first_response_median == 36000


def test_an_agent_sees_only_their_own_figures(host):
    ids = seed(host)
    r = report(host, agent_id=ids["ada"], mailbox_ids={ids["support"]})
    assert (r.total.new, r.total.closed, r.total.replies, r.total.waiting) == (2, 3, 3, 0)
    assert [f.label for f in r.by_agent] == ["Ada"]
    assert [f.label for f in r.by_mailbox] == ["Support"]


def client_for(host, uid):
    client = host.app.test_client()
    host.login(client, uid)
    with client.session_transaction() as sess:
        sess["_shared_inbox_csrf"] = CSRF
    return client


def kpi(page, name):
    return page.split(f'id="si-kpi-{name}">')[1].split("<")[0]


def test_the_page_shows_figures_and_svg_charts_and_agents_see_their_own(host):
    ids = seed(host)
    url = "/support/reports?start=2026-03-02&end=2026-03-08"
    assert host.app.test_client().get(url).status_code == 302  # login first
    shopper = host.add_user("shop@x.test", role="customer")
    assert client_for(host, shopper).get(url).status_code == 403

    page = client_for(host, ids["boss"]).get(url).get_data(as_text=True)
    assert (kpi(page, "new"), kpi(page, "closed"), kpi(page, "replies")) == ("5", "4", "4")
    assert kpi(page, "frt") == "45 min" and kpi(page, "fcr") == "50%"
    assert kpi(page, "sla") == "50%" and kpi(page, "csat") == "67%"
    assert page.count("<svg") == 3 and "<script>" not in page.split("</head>")[1]
    # The charts carry the hand-worked values (hover titles): tickets per day, the median
    # first response per day, and the busiest hours.
    assert "06 Mar: 1 new" in page and "06 Mar: 1 closed" in page and "04 Mar: 0 new" in page
    assert "02 Mar: 30 min" in page and "05 Mar: 1 h" in page
    assert "Mon 10:00–10:59: 1" in page and "Fri 22:00–22:59: 1" in page
    assert ">Ben</th>" in page and ">refund</th>" in page

    page = client_for(host, ids["ada"]).get(url).get_data(as_text=True)
    assert kpi(page, "new") == "2" and ">Ben</th>" not in page and "Your own figures" in page
    # Ada may not pick a mailbox she is not a member of: it reports nothing.
    page = client_for(host, ids["ada"]).get(url + f"&mailbox={ids['sales']}").get_data(as_text=True)
    assert kpi(page, "new") == "0"


def test_bad_dates_are_shown_beside_the_field_and_kept(host):
    ids = seed(host)
    r = client_for(host, ids["boss"]).get("/support/reports?start=2026-13-01&end=2026-03-08")
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and "enter a date as YYYY-MM-DD" in page
    assert 'value="2026-13-01"' in page
    r = client_for(host, ids["boss"]).get("/support/reports?start=2026-03-08&end=2026-03-01")
    assert r.status_code == 400 and "before the start" in r.get_data(as_text=True)


def test_csv_exports_the_figures_and_the_tickets(host, monkeypatch):
    from shared_inbox.services import reports

    monkeypatch.setattr(reports, "CSV_PAGE", 2)  # six tickets: three pages and an empty one
    ids = seed(host)
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.get(m.Ticket, ids["T1"]).subject = "=HYPERLINK(\"http://evil\")"
        host.db.session.get(m.Ticket, ids["T2"]).subject = "-1+2"
        host.db.session.get(m.Ticket, ids["T3"]).subject = "+SUM(A1)"
        host.db.session.get(m.Tag, ids["refund"]).name = "@refund"
        host.db.session.commit()
    boss = client_for(host, ids["boss"])
    r = boss.get("/support/reports/figures.csv?start=2026-03-02&end=2026-03-08")
    assert r.mimetype == "text/csv" and "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    first = rows[0]
    assert (first["group"], first["new"], first["closed"], first["replies_sent"]) == \
        ("all", "5", "4", "4")
    assert first["first_response_median_seconds"] == "2700"
    assert first["first_contact_resolution"] == "0.5" and first["csat"] == "0.6667"
    assert {(r["group"], r["name"]) for r in rows} >= {("mailbox", "Support"), ("agent", "Ben"),
                                                       ("tag", "vip"), ("tag", "'@refund")}
    r = boss.get("/support/reports/tickets.csv?start=2026-03-02&end=2026-03-08",
                 buffered=False)
    assert r.is_streamed  # a generator response: a year of tickets is not built in memory
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert [int(x["id"]) for x in rows] == sorted(ids[k] for k in ("T1", "T2", "T3", "T4", "T5", "T6"))
    t1 = next(x for x in rows if int(x["id"]) == ids["T1"])
    # No cell starts a formula for the spreadsheet to run (= + - @), customer text included.
    by_id = {int(x["id"]): x for x in rows}
    assert t1["subject"] == "'=HYPERLINK(\"http://evil\")"
    assert (by_id[ids["T2"]]["subject"], by_id[ids["T3"]]["subject"]) == ("'-1+2", "'+SUM(A1)")
    assert by_id[ids["T4"]]["tags"] == "'@refund" and by_id[ids["T3"]]["tags"] == "'@refund;vip"
    assert by_id[ids["T4"]]["resolution_seconds"] == "172800"
    assert (t1["first_response_seconds"], t1["rating"], t1["tags"]) == ("1800", "great", "vip")
    # An agent's export holds only their tickets.
    r = client_for(host, ids["ben"]).get("/support/reports/tickets.csv?start=2026-03-02&end=2026-03-08")
    assert {int(x["id"]) for x in csv.DictReader(io.StringIO(r.get_data(as_text=True)))} == \
        {ids["T4"], ids["T5"]}


def test_the_tickets_csv_is_sent_a_chunk_at_a_time_with_formulas_escaped():
    tickets = ({**dict.fromkeys(TICKET_COLUMNS, ""), "id": i,
                "subject": "=1+1" if i == 3 else f"Order {i}"} for i in range(1, 6))
    report = Report(start=MON, end=SUN, total=Figures("All"), by_mailbox=[], by_agent=[],
                    by_tag=[], days=[], heatmap=[], tickets=tickets)
    chunks = list(iter_tickets_csv(report, chunk_rows=2))
    assert len(chunks) == 3  # rows 1-2 (with the header), 3-4, 5
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert [r["id"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert rows[2]["subject"] == "'=1+1" and rows[4]["subject"] == "Order 5"


def notifications(host):
    with host.app.app_context():
        rows = host.db.session.scalars(sa.select(host.inbox.models.Notification)).all()
        out = [(n.reason, n.subject, n.to, n.body_text, n.body_html) for n in rows]
        host.db.session.remove()
        return out


def test_weekly_summary_goes_to_the_admins_once_per_week_even_from_several_workers(host):
    seed(host)
    monday_after = datetime(2026, 3, 9, 6, 0)
    results = []

    def worker():
        with host.app.app_context():
            try:
                results.append(send_weekly_summary(monday_after))
            finally:
                host.db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == [False, False, False, True]
    sent = notifications(host)
    assert len(sent) == 1
    reason, subject, to, text, html = sent[0]
    assert reason == "weekly_summary" and subject == "Support summary for 2026-W10"
    assert to == [["Boss", "boss@x.test"]]
    assert "New tickets: 5" in text and "Closed tickets: 4" in text and "Support:" in text
    assert "<table" in html
    # Later in the same week: nothing more; the next week: the next summary.
    with host.app.app_context():
        assert send_weekly_summary(datetime(2026, 3, 12, 6, 0)) is False
        assert send_weekly_summary(datetime(2026, 3, 16, 6, 0),
                                   report_url="http://shop.test/support/reports") is True
    # The link opens the report of that week.
    week = "http://shop.test/support/reports?start=2026-03-09&amp;end=2026-03-15&amp;tz=UTC"
    assert [n[1] for n in notifications(host) if week in n[4]] == ["Support summary for 2026-W11"]
    assert [s[1] for s in notifications(host)] == ["Support summary for 2026-W10",
                                                    "Support summary for 2026-W11"]


def test_the_worker_job_sends_the_summary_once(host):
    from shared_inbox.scheduler import make_scheduler, weekly_summary_job

    seed(host)
    assert "weekly_summary" in {j.id for j in make_scheduler(host.app).get_jobs()}
    weekly_summary_job(host.app)
    weekly_summary_job(host.app)
    assert len(notifications(host)) == 1


def test_the_business_timeline_agrees_with_business_seconds_between():
    """The reports' fast business-time arithmetic gives the same seconds as the SLA timers',
    across nights, weekends, a holiday and both DST changes of a real time zone."""
    import random
    from datetime import timedelta

    from shared_inbox.services.business_hours import business_seconds_between, make_schedule
    from shared_inbox.services.reports import BusinessTimeline

    hours = {"0": [["09:00", "12:00"], ["13:00", "17:30"]], "1": [["09:00", "17:00"]],
             "2": [["00:00", "24:00"]], "3": [["02:30", "03:30"], ["22:00", "24:00"]],
             "4": [["09:00", "17:00"]], "5": [["10:00", "14:00"]]}
    schedule = make_schedule("Europe/Berlin", hours, holidays=[date(2026, 3, 31)])
    timeline = BusinessTimeline(schedule)
    rng = random.Random(6)
    base = datetime(2026, 3, 20)  # DST starts 29 March, ends 25 October
    for _ in range(400):
        a = base + timedelta(minutes=rng.randint(0, 60 * 24 * 240))
        b = a + timedelta(minutes=rng.randint(0, 60 * 24 * 20), seconds=rng.randint(0, 59))
        assert timeline.seconds(a, b) == pytest.approx(
            business_seconds_between(schedule, a, b), abs=0.001), (a, b)
    # Hand-worked: Friday 16:00 Berlin (15:00 UTC) to Monday 10:00 Berlin (08:00 UTC after
    # the change to summer time): 1 h Friday + 4 h Saturday + 1 h Monday morning.
    assert timeline.seconds(datetime(2026, 3, 27, 15), datetime(2026, 3, 30, 8)) == 6 * 3600


def test_days_and_hours_follow_the_report_time_zone_across_a_dst_change(host):
    """New York moved to summer time on Sunday 8 March 2026. Two late tickets: Sunday 1 March
    22:00 EST (Monday 03:00 UTC) and Sunday 8 March 22:00 EDT (Monday 9 March 02:00 UTC)."""
    ids = seed(host)
    with host.app.app_context():
        m = host.inbox.models
        for created in (datetime(2026, 3, 2, 3), datetime(2026, 3, 9, 2)):
            host.db.session.add(m.Ticket(mailbox_id=ids["sales"], subject="late", status="pending",
                                         created_at=created, last_message_at=created))
        host.db.session.commit()

    utc = report(host, tz="UTC")
    assert utc.total.new == 6 and utc.heatmap[0][3] == 1 and utc.heatmap[0][10] == 1
    assert (utc.days[0].day, utc.days[0].new, utc.days[0].closed) == (MON, 2, 1)

    ny = report(host, tz="America/New_York")
    assert ny.tz == "America/New_York" and (ny.total.new, ny.total.closed) == (6, 4)
    cells = {(d, h): v for d, row in enumerate(ny.heatmap) for h, v in enumerate(row) if v}
    # T1 Mon 05, T5 Tue 04, T2 Thu 11, T4 Fri 17, T3 Sat 06 (EST), the late one Sun 22 (EDT).
    assert cells == {(0, 5): 1, (1, 4): 1, (3, 11): 1, (4, 17): 1, (5, 6): 1, (6, 22): 1}
    per_day = [(d.new, d.closed) for d in ny.days]
    assert per_day == [(1, 1), (1, 0), (0, 1), (1, 0), (1, 1), (1, 0), (1, 1)]
    assert ny.total.replies == 4 and ny.total.rating_count == 3

    # The page uses the zone the mailboxes share by default; a wrong name is refused beside
    # the field and kept.
    with host.app.app_context():
        for mailbox in host.db.session.scalars(sa.select(host.inbox.models.Mailbox)):
            mailbox.timezone = "America/New_York"
        host.db.session.commit()
    boss = client_for(host, ids["boss"])
    page = boss.get("/support/reports?start=2026-03-02&end=2026-03-08").get_data(as_text=True)
    assert 'value="America/New_York"' in page and kpi(page, "new") == "6"
    assert "Sun 22:00–22:59: 1" in page
    r = boss.get("/support/reports?start=2026-03-02&end=2026-03-08&tz=Mars/Olympus")
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and 'value="Mars/Olympus"' in page and "not a time zone" in page


def test_the_weekly_summary_waits_for_the_local_week_to_end():
    from shared_inbox.services.reports import last_week

    # Monday 03:00 UTC is still Sunday evening in New York: its last full week is the one before.
    assert last_week(datetime(2026, 3, 9, 3)) == (date(2026, 3, 2), date(2026, 3, 8), "2026-W10")
    assert last_week(datetime(2026, 3, 9, 3), "America/New_York") == \
        (date(2026, 2, 23), date(2026, 3, 1), "2026-W09")


def stored(host, ticket_id):
    """(basis, first response, resolution) a report stored on the ticket."""
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, ticket_id)
        return t.report_basis, t.report_first_response_seconds, t.report_resolution_seconds


def test_stored_durations_are_used_until_hours_holidays_or_the_closing_change(host):
    """The page stores each ticket's business durations for the next report; new hours, a new
    holiday or a ticket closed again must give the hand-worked figures of the new state."""
    ids = seed(host)
    url = "/support/reports?start=2026-03-02&end=2026-03-08&tz=UTC"
    boss = client_for(host, ids["boss"])
    assert boss.get(url).status_code == 200
    basis, frt, res = stored(host, ids["T2"])
    assert basis.startswith("bh:") and (frt, res) == (3600, 5400)
    assert stored(host, ids["T4"]) == ("wall", 10800, 172800)
    with host.app.app_context():
        before = host.db.session.get(host.inbox.models.Ticket, ids["T1"]).updated_at
    r = report(host)
    assert r.fills == []  # everything read from the stored values
    assert sorted(r.total.first_response) == [900, 1800, 3600, 10800]
    assert sorted(r.total.resolution) == [5400, 7200, 172800, 230400]

    # Friday 6 March becomes a holiday for every mailbox: T2 (Thu 16:30 -> Fri 09:30) now
    # waited 30 business minutes, and was resolved in 30 minutes too.
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.add(m.BusinessHoliday(mailbox_id=None, day=date(2026, 3, 6)))
        host.db.session.commit()
        assert host.db.session.get(m.Ticket, ids["T1"]).updated_at == before
    r = report(host)
    assert sorted(r.total.first_response) == [900, 1800, 1800, 10800]
    assert sorted(r.total.resolution) == [1800, 7200, 172800, 230400]  # T6 closed before
    assert boss.get(url).status_code == 200  # stores the new durations
    assert stored(host, ids["T2"])[1:] == (1800, 1800)

    # Support drops its hours: wall clock (T2 17 h, T3 46 h 15 min), not the stored values.
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.get(m.Mailbox, ids["support"]).business_hours = None
        host.db.session.commit()
    assert sorted(report(host).total.first_response) == [1800, 10800, 61200, 166500]
    assert boss.get(url).status_code == 200
    assert stored(host, ids["T2"]) == ("wall", 61200, 63000)
    with host.app.app_context():
        host.db.session.get(host.inbox.models.Mailbox, ids["support"]).business_hours = OFFICE
        host.db.session.execute(sa.delete(host.inbox.models.BusinessHoliday))
        host.db.session.commit()
    assert sorted(report(host).total.first_response) == [900, 1800, 3600, 10800]
    assert boss.get(url).status_code == 200

    # T1 (Mon 10:00, closed Mon 12:00) is reopened, then closed again Tue 10:00: 8 business
    # hours; while open it is not closed in the range at all.
    with host.app.app_context():
        t1 = host.db.session.get(host.inbox.models.Ticket, ids["T1"])
        t1.status, t1.closed_at = "open", None
        host.db.session.commit()
    r = report(host)
    assert r.total.closed == 3 and sorted(r.total.resolution) == [5400, 172800, 230400]
    with host.app.app_context():
        t1 = host.db.session.get(host.inbox.models.Ticket, ids["T1"])
        t1.status, t1.closed_at = "closed", at(3, 10)
        host.db.session.commit()
    assert sorted(report(host).total.resolution) == [5400, 28800, 172800, 230400]


def test_durations_worked_out_before_a_ticket_closed_again_are_not_stored(host):
    """A report reads a ticket, the ticket is closed again, then the report stores what it
    worked out: the stale duration must not be kept (the next report works it out anew)."""
    from shared_inbox.services.reports import store_durations

    ids = seed(host)
    with host.app.app_context():
        m = host.inbox.models
        r = compute_report(MON, SUN, now=NOW)
        assert {f[0] for f in r.fills} >= {ids["T1"], ids["T2"], ids["T4"]}
        t1 = host.db.session.get(m.Ticket, ids["T1"])
        t1.closed_at = at(3, 10)  # closed again meanwhile (by another request)
        host.db.session.commit()
        store_durations(r.fills)
        host.db.session.commit()
        assert host.db.session.get(m.Ticket, ids["T1"]).report_basis is None
        assert host.db.session.get(m.Ticket, ids["T2"]).report_first_response_seconds == 3600
        host.db.session.remove()
    assert sorted(report(host).total.resolution) == [5400, 28800, 172800, 230400]
