"""Customer satisfaction end to end: reply and close -> the real SMTP server receives the
rating links -> the customer clicks (no login) -> the rating shows on the ticket and in the
reports; a second click updates it; forged and expired links get a clear page."""
import re
import time
from datetime import date
from email import message_from_bytes, policy
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from shared_inbox.models import utcnow
from shared_inbox.services.reports import compute_report
from shared_inbox.services.satisfaction import SALT
from test_replies import client_for, deliver, post, setup_ticket

LINK = re.compile(r"(Great|Okay|Not good): (http://\S+)")


@pytest.fixture
def server(mail_server):
    return mail_server


def enable(host, value=True):
    host.app.config["SHARED_INBOX_SATISFACTION"] = value


def close_with_reply(host, server, client, ticket_id, text="All sorted, have a good day."):
    r = post(client, f"/support/tickets/{ticket_id}/reply", text=text, action="close")
    assert r.status_code == 302
    assert deliver(host).sent >= 1
    sent = server.wait_for_sent(len(server.sent) or 1)[-1]
    return message_from_bytes(sent.data, policy=policy.default)


def links_of(msg) -> dict:
    text = msg.get_body(("plain",)).get_content()
    return {label: url for label, url in LINK.findall(text)}


def rating_row(host, ticket_id):
    with host.app.app_context():
        m = host.inbox.models
        rows = host.db.session.scalars(
            sa.select(m.SatisfactionRating).where(m.SatisfactionRating.ticket_id == ticket_id)).all()
        out = [(r.rating, r.comment) for r in rows]
        host.db.session.remove()
        return out


def path(url):
    parts = urlsplit(url)
    return parts.path


def public_csrf(page: str) -> str:
    return page.split('name="csrf_token" value="')[1].split('"')[0]


def test_closing_reply_carries_rating_links_and_a_click_records_then_updates(host, server):
    enable(host)
    box, ticket_id, ada, _ = setup_ticket(host, server)
    agent = client_for(host, ada)
    msg = close_with_reply(host, server, agent, ticket_id)
    links = links_of(msg)
    assert set(links) == {"Great", "Okay", "Not good"}
    assert "How did we do?" in msg.get_body(("html",)).get_content()
    # The agent's own text in the thread stays what they wrote.
    page = agent.get(f"/support/tickets/{ticket_id}").get_data(as_text=True)
    assert "All sorted" in page

    customer = host.app.test_client()  # no login
    head = customer.head(path(links["Not good"]))
    assert head.status_code == 200 and rating_row(host, ticket_id) == []  # link checkers
    r = customer.get(path(links["Great"]))
    assert r.status_code == 200 and "Thank you for your rating" in r.get_data(as_text=True)
    assert rating_row(host, ticket_id) == [("great", "")]
    r = customer.get(path(links["Not good"]))
    assert rating_row(host, ticket_id) == [("bad", "")]  # updated, not added

    # The optional comment (CSRF-protected form on the page), shown escaped to agents.
    page = r.get_data(as_text=True)
    assert 'value="bad" checked' in page
    assert customer.post(urlsplit(links["Great"]).path.rsplit("/", 1)[0],
                         data={"comment": "x"}).status_code == 400  # no CSRF token
    r = customer.post(re.search(r'action="([^"]+)"', page).group(1),
                      data={"csrf_token": public_csrf(page), "rating": "okay",
                            "comment": "Slow, but <b>fixed</b>"})
    assert r.status_code == 200 and "your answer is saved" in r.get_data(as_text=True)
    assert rating_row(host, ticket_id) == [("okay", "Slow, but <b>fixed</b>")]

    page = agent.get(f"/support/tickets/{ticket_id}").get_data(as_text=True)
    assert "rated Okay" in page and "Slow, but &lt;b&gt;fixed&lt;/b&gt;" in page
    assert "<b>fixed</b>" not in page
    assert "Satisfaction" in page
    # The activity log tells how the rating changed.
    assert "recorded the customer's rating: Great" in page
    assert "recorded the customer's rating: Okay (was Not good)" in page

    with host.app.app_context():
        today = utcnow().date()
        r = compute_report(today, today)
        assert (r.total.rating_count, r.total.ratings["okay"], r.total.csat) == (1, 1, 0.0)


def test_a_too_long_comment_is_refused_beside_the_field_and_kept(host, server):
    enable(host)
    box, ticket_id, ada, _ = setup_ticket(host, server)
    links = links_of(close_with_reply(host, server, client_for(host, ada), ticket_id))
    customer = host.app.test_client()
    page = customer.get(path(links["Great"])).get_data(as_text=True)
    long = "very " * 1200
    r = customer.post(re.search(r'action="([^"]+)"', page).group(1),
                      data={"csrf_token": public_csrf(page), "rating": "great", "comment": long})
    body = r.get_data(as_text=True)
    assert r.status_code == 422 and "keep the comment under" in body and long.strip() in body
    assert rating_row(host, ticket_id) == [("great", "")]


def test_no_links_when_disabled_in_plain_replies_or_for_other_mailboxes(host, server):
    box, ticket_id, ada, _ = setup_ticket(host, server)
    agent = client_for(host, ada)
    assert links_of(close_with_reply(host, server, agent, ticket_id)) == {}  # off by default
    enable(host, ["sales@example.com"])  # on, but for another mailbox
    assert links_of(close_with_reply(host, server, agent, ticket_id, "Reopened and closed")) == {}
    enable(host, ["SUPPORT@example.com"])
    r = post(agent, f"/support/tickets/{ticket_id}/reply", text="Just a reply", action="send")
    assert r.status_code == 302 and deliver(host).sent == 1
    msg = message_from_bytes(server.wait_for_sent(3)[-1].data, policy=policy.default)
    assert links_of(msg) == {}  # only the closing reply asks
    assert set(links_of(close_with_reply(host, server, agent, ticket_id, "Closing now"))) == \
        {"Great", "Okay", "Not good"}


def test_forged_and_expired_links_get_a_clear_page(host, server):
    enable(host)
    box, ticket_id, ada, _ = setup_ticket(host, server)
    customer = host.app.test_client()
    r = customer.get("/help/rate/not-a-token/great")
    assert r.status_code == 400 and "not valid" in r.get_data(as_text=True)
    forged = URLSafeTimedSerializer("another-secret", salt=SALT).dumps({"t": ticket_id, "m": None})
    assert customer.get(f"/help/rate/{forged}/great").status_code == 400

    class PastSigner(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - 31 * 86400

    old = URLSafeTimedSerializer(host.app.secret_key, salt=SALT, signer=PastSigner).dumps(
        {"t": ticket_id, "m": None})
    r = customer.get(f"/help/rate/{old}/great")
    assert r.status_code == 410 and "expired" in r.get_data(as_text=True)
    good = URLSafeTimedSerializer(host.app.secret_key, salt=SALT).dumps({"t": ticket_id, "m": None})
    assert customer.get(f"/help/rate/{good}/excellent").status_code == 400  # not a choice
    assert rating_row(host, ticket_id) == []
    assert customer.get(f"/help/rate/{good}/okay").status_code == 200
    assert rating_row(host, ticket_id) == [("okay", "")]


def test_ratings_are_counted_per_agent_in_the_reports(host, server):
    enable(host)
    box, ticket_id, ada, _ = setup_ticket(host, server)
    agent = client_for(host, ada)
    post(agent, f"/support/tickets/{ticket_id}/assign", assignee_id=str(ada))
    links = links_of(close_with_reply(host, server, agent, ticket_id))
    host.app.test_client().get(path(links["Great"]))
    with host.app.app_context():
        today = utcnow().date()
        r = compute_report(date(today.year, today.month, 1) if today.day > 1 else today, today)
        ada_row = next(f for f in r.by_agent if f.key == ada)
        assert (ada_row.rating_count, ada_row.csat, r.total.csat) == (1, 1.0, 1.0)


def test_an_admin_switches_rating_requests_per_mailbox_in_settings(host, server):
    """No config edit needed: the mailbox form's checkbox decides, for that mailbox, and
    wins over SHARED_INBOX_SATISFACTION either way."""
    from test_settings import form_data, token

    box, ticket_id, ada, _ = setup_ticket(host, server)
    agent = client_for(host, ada)
    admin = host.app.test_client()
    host.login(admin, host.add_user("boss@acme.test", role="admin"))
    edit_url = f"/support/settings/mailboxes/{box}/edit"

    def save(**choice):
        data = form_data(server, imap_password="", **choice)
        data["csrf_token"] = token(admin, edit_url)
        assert admin.post(edit_url, data=data).status_code == 302

    checked = 'name="ask_for_rating" value="1" checked'
    assert checked not in admin.get(edit_url).get_data(as_text=True)  # off by default
    save(ask_for_rating="1")
    assert checked in admin.get(edit_url).get_data(as_text=True)
    assert set(links_of(close_with_reply(host, server, agent, ticket_id))) == \
        {"Great", "Okay", "Not good"}

    enable(host, True)  # on for every mailbox in config, but this one says no
    save()  # unticked
    assert checked not in admin.get(edit_url).get_data(as_text=True)
    assert links_of(close_with_reply(host, server, agent, ticket_id, "Closing again")) == {}
