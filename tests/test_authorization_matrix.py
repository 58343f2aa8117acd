"""Every route x every kind of visitor -> the expected answer, generated from ``app.url_map``.

The table ``ENDPOINTS`` says what each endpoint is (public page, any agent, something inside a
mailbox, admin only...). A route added without a row makes ``test_every_endpoint_is_in_the_table``
fail, so nobody can forget to decide who may use it.

Visitors: anonymous, a logged-in user who is not an agent, an agent who is a member of another
mailbox only ("outsider"), a member agent of the mailbox, an admin. URL parameters are real ids
of objects in the *support* mailbox (the outsider belongs to *billing* only): identifiers guessed
across mailboxes must answer exactly like an id that does not exist (404, same body).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from shared_inbox.csrf import SESSION_KEY

ROLES = ("anonymous", "nonagent", "outsider", "member", "admin")
MISSING_ID = 987654


@dataclass(frozen=True)
class Rule:
    """What an endpoint is, and form data that makes a POST a meaningful, harmless action."""

    kind: str  # host | static | public | agent | mailbox | admin
    data: dict = field(default_factory=dict)


# Endpoint names without the blueprint name ("dash." / "public." stand for this app's names).
ENDPOINTS: dict[str, Rule] = {
    # the host's own routes, not ours
    "login": Rule("host"),
    "static": Rule("host"),
    # dashboard: any agent; what they see inside is filtered by mailbox (tested below)
    "dash.static": Rule("static"),
    "dash.index": Rule("agent"),
    "dash.bulk_action": Rule("agent", {"action": "status:closed", "ticket": "{ticket_id}"}),
    # dashboard: an object inside a mailbox -> members and admins only, 404 for everyone else
    "dash.ticket": Rule("mailbox"),
    "dash.assign_ticket": Rule("mailbox", {"assignee_id": ""}),
    "dash.snooze_ticket": Rule("mailbox", {"until": "2999-01-01T09:00"}),
    "dash.unsnooze_ticket": Rule("mailbox"),
    "dash.merge_ticket": Rule("mailbox", {"target": str(MISSING_ID)}),
    "dash.set_status": Rule("mailbox", {"status": "pending"}),
    "dash.split": Rule("mailbox"),
    "dash.attachment": Rule("mailbox"),
    "dash.original": Rule("mailbox"),
    "dash.reply": Rule("mailbox", {"text": "Thanks, we are on it."}),
    "dash.add_note": Rule("mailbox", {"text": "Internal: check the order."}),
    "dash.forward_ticket": Rule("mailbox", {"to": "warehouse@example.net", "text": "FYI"}),
    "dash.retry_send": Rule("mailbox"),
    "dash.ticket_saved_replies": Rule("mailbox"),
    "dash.ticket_presence": Rule("mailbox", {"state": "viewing"}),
    "dash.ticket_tag_add": Rule("mailbox", {"name": "vip"}),
    "dash.ticket_tag_remove": Rule("mailbox"),
    # dashboard: settings, admins only
    "dash.settings": Rule("admin"),
    "dash.mailbox_new": Rule("admin", {"name": ""}),
    "dash.mailbox_edit": Rule("admin", {"name": ""}),
    "dash.mailbox_test": Rule("admin"),
    "dash.mailbox_members": Rule("admin", {"user_id": "", "action": "add"}),
    "dash.saved_replies": Rule("admin"),
    "dash.saved_reply_new": Rule("admin", {"title": ""}),
    "dash.saved_reply_edit": Rule("admin", {"title": ""}),
    "dash.saved_reply_delete": Rule("admin"),
    "dash.tags_settings": Rule("admin"),
    "dash.tag_edit": Rule("admin", {"name": "urgent", "color": "#aa0000"}),
    "dash.tag_delete": Rule("admin"),
    "dash.autoreplies_settings": Rule("admin", {"ack_subject": ""}),
    "dash.business_hours_settings": Rule("admin", {"timezone": "Not/AZone"}),
    "dash.global_holidays": Rule("admin", {"day": "not a date"}),
    "dash.service_levels": Rule("admin"),
    "dash.sla_policy_new": Rule("admin", {"name": ""}),
    "dash.sla_policy_edit": Rule("admin", {"name": ""}),
    "dash.sla_policy_delete": Rule("admin"),
    "dash.rules_settings": Rule("admin"),
    "dash.rule_new": Rule("admin", {"name": ""}),
    "dash.rule_edit": Rule("admin", {"name": ""}),
    "dash.rule_toggle": Rule("admin"),
    "dash.rule_move": Rule("admin", {"direction": "up"}),
    "dash.rule_delete": Rule("admin"),
    "dash.rule_dry_run": Rule("admin"),
    "dash.rule_member_availability": Rule("admin", {"available": "0"}),
    "dash.webhooks": Rule("admin"),
    "dash.webhook_new": Rule("admin", {"name": "", "url": ""}),
    "dash.webhook_edit": Rule("admin", {"name": "", "url": ""}),
    "dash.webhook_test": Rule("admin"),
    "dash.webhook_delete": Rule("admin"),
    "dash.webhook_delivery_retry": Rule("admin"),
    # reports: admins see everyone's figures, agents their own (tested in test_reports.py)
    "dash.reports": Rule("agent"),
    "dash.reports_figures_csv": Rule("agent"),
    "dash.reports_tickets_csv": Rule("agent"),
    # a customer is seen through their tickets: 404 when none is in the agent's mailboxes
    "dash.customer": Rule("mailbox"),
    "dash.customer_edit": Rule("mailbox", {"name": "Cust renamed", "notes": "Prefers mail"}),
    # customer-facing pages: no login (web form, satisfaction links carrying a signed token)
    "public.contact": Rule("public", {"name": "Visitor", "email": "visitor@example.org",
                                      "subject": "Question", "message": "Do you ship to Oslo?"}),
    "public.contact_for": Rule("public", {"name": "Visitor", "email": "visitor@example.org",
                                          "subject": "Order", "message": "Where is my order?"}),
    "public.contact_thanks": Rule("public"),
    "public.rate": Rule("public"),
    "public.rate_comment": Rule("public", {"rating": "great", "comment": "Quick and kind."}),
}


def _canonical(endpoint: str) -> str:
    blueprint, dot, rest = endpoint.partition(".")
    if not dot:
        return endpoint
    if blueprint == "shared_inbox":
        return f"dash.{rest}"
    if blueprint == "shared_inbox_public":
        return f"public.{rest}"
    return endpoint


def _rules(app):
    return sorted(app.url_map.iter_rules(), key=lambda r: (r.endpoint, r.rule))


def _token(client) -> str:
    with client.session_transaction() as sess:
        sess.setdefault(SESSION_KEY, "matrix-csrf-token")
        return sess[SESSION_KEY]


# --- the world --------------------------------------------------------------------------------


def _objects(host, mailbox, suffix: str) -> dict:
    """A ticket with an inbound message (+ attachment + raw original), an internal note and a
    failed outbound reply, all in ``mailbox``."""
    m = host.inbox.models
    session = host.db.session
    storage = host.app.extensions["shared_inbox"].storage
    customer = m.Customer(email=f"cust-{suffix}@example.org", name=f"Cust {suffix}")
    ticket = m.Ticket(mailbox_id=mailbox.id, customer=customer, subject=f"Secret {suffix}",
                      snippet=f"secret {suffix}")
    session.add(ticket)
    session.flush()
    inbound = m.Message(ticket_id=ticket.id, mailbox_id=mailbox.id, kind="inbound",
                        from_email=customer.email, body_text=f"body {suffix}",
                        raw_key=storage.put(f"Subject: {suffix}\r\n\r\nx".encode(), kind="raw"))
    inbound.attachments.append(m.Attachment(
        filename=f"invoice-{suffix}.pdf", content_type="application/pdf", size=20,
        storage_key=storage.put(f"%PDF-1.4 {suffix}".encode(), kind="att")))
    note = m.Message(ticket_id=ticket.id, mailbox_id=mailbox.id, kind="note",
                     body_text=f"note {suffix}")
    failed = m.Message(ticket_id=ticket.id, mailbox_id=mailbox.id, kind="outbound",
                       from_email=mailbox.email_address, to=[["", customer.email]],
                       subject=f"Re: Secret {suffix}", body_text="reply", send_status="failed",
                       send_error="550 refused")
    session.add_all([inbound, note, failed])
    session.flush()
    return {"ticket_id": ticket.id, "message_id": inbound.id, "customer_id": customer.id,
            "attachment_id": inbound.attachments[0].id, "note_id": note.id,
            "outbound_id": failed.id}


@pytest.fixture
def world(host):
    """Support (member: Ada) and billing (outsider: Ben) mailboxes; two object sets in support
    (one for the member, one for the admin, so neither's action spoils the other's)."""
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        support = m.Mailbox(name="Support", email_address="support@x.test")
        billing = m.Mailbox(name="Billing", email_address="billing@x.test")
        session.add_all([support, billing])
        session.flush()
        objects = {"member": _objects(host, support, "a"), "admin": _objects(host, support, "b")}
        tag = m.Tag(name="refund")
        session.add(tag)
        session.add(m.SavedReply(title="Thanks", body="Thanks!"))
        session.commit()
        reply_id = session.scalar(sa.select(m.SavedReply.id))
        hook = m.Webhook(name="Hook", url="http://127.0.0.1:9/hook", events=["ticket_created"])
        session.add(hook)
        session.flush()
        delivery = m.WebhookDelivery(webhook_id=hook.id, event="ticket_created", payload={},
                                     status="failed", attempts=5, error="connection refused")
        rule = m.Rule(name="VIP", mailbox_id=support.id, conditions=[], actions=[])
        policy = m.SlaPolicy(name="Standard", first_response_minutes=60)
        session.add_all([delivery, rule, policy])
        session.commit()
        from shared_inbox.services.satisfaction import make_token

        token = make_token(session.get(m.Ticket, objects["member"]["ticket_id"]))
        ids = {"tag_id": tag.id, "reply_id": reply_id, "mailbox_id": support.id,
               "support": support.id, "billing": billing.id, "webhook_id": hook.id,
               "delivery_id": delivery.id, "rule_id": rule.id, "policy_id": policy.id,
               "token": token, "rating": "great", "slug": "sales"}
    # The web form: the default form and a "sales" one go to support; every visitor may send.
    host.app.config.update(SHARED_INBOX_WEBFORM_MAILBOX="support@x.test",
                           SHARED_INBOX_WEBFORM_MAILBOXES={"sales": "support@x.test"},
                           SHARED_INBOX_WEBFORM_RATE_LIMIT=1000)
    users = {
        "nonagent": host.add_user("shopper@x.test", role="customer"),
        "outsider": host.add_user("ben@x.test"),
        "member": host.add_user("ada@x.test"),
        "admin": host.add_user("boss@x.test", role="admin"),
    }
    with host.app.app_context():
        m = host.inbox.models
        membership = m.MailboxMember(mailbox_id=ids["support"], user_id=users["member"])
        host.db.session.add_all([membership,
                                 m.MailboxMember(mailbox_id=ids["billing"], user_id=users["outsider"])])
        host.db.session.commit()
        ids["member_id"] = membership.id
    # The tag is on both tickets, so removing it is a real action.
    with host.app.app_context():
        m = host.inbox.models
        tag = host.db.session.get(m.Tag, ids["tag_id"])
        for role in ("member", "admin"):
            ticket = host.db.session.get(m.Ticket, objects[role]["ticket_id"])
            ticket.tags.append(tag)
        host.db.session.commit()
    return {"objects": objects, "ids": ids, "users": users}


def _values(rule, world, role: str, *, missing: bool = False) -> dict:
    """URL values for ``rule``: real ids (the member's set for visitors without access)."""
    objects = world["objects"]["admin" if role == "admin" else "member"]
    values = {}
    for arg in sorted(rule.arguments):
        if missing and arg in ("ticket_id", "message_id", "attachment_id", "note_id",
                               "customer_id"):
            values[arg] = MISSING_ID
        elif arg == "message_id" and rule.endpoint.endswith("retry_send"):
            values[arg] = objects["outbound_id"]
        elif arg in objects:
            values[arg] = objects[arg]
        elif arg in world["ids"]:
            values[arg] = world["ids"][arg]
        elif arg == "filename":
            values[arg] = "inbox.css"
        else:
            pytest.fail(f"{rule.endpoint}: no test value for URL parameter <{arg}>; "
                        "add one to _values() in test_authorization_matrix.py")
    return values


def _request(host, client, rule, world, role, *, method, missing=False, csrf=True):
    values = _values(rule, world, role, missing=missing)
    with host.app.test_request_context():
        from flask import url_for
        url = url_for(rule.endpoint, **values)
    if method == "GET":
        response = client.get(url)
        response.get_data()
        response.close()  # a static file's handle, not left to the garbage collector
        return response
    spec = ENDPOINTS[_canonical(rule.endpoint)]
    data = {k: v.format(**{**values, **world["objects"]["member"]}) for k, v in spec.data.items()}
    if csrf:
        data["csrf_token"] = _token(client)
    return client.post(url, data=data)


def _client(host, world, role):
    client = host.app.test_client()
    if role != "anonymous":
        host.login(client, world["users"][role])
    return client


def _cases():
    """(endpoint, method) for every rule of a host app, built once at collection time."""
    import tempfile
    from pathlib import Path

    from hosts import Host

    with tempfile.TemporaryDirectory() as tmp:
        h = Host(database_url=f"sqlite:///{tmp}/collect.db", tmp_path=Path(tmp))
        cases = []
        for rule in _rules(h.app):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                cases.append((rule.endpoint, method))
        return cases


CASES = _cases()


def test_every_endpoint_is_in_the_table(host):
    """A new route must be classified here before it ships (public? agents? admins?)."""
    known = set(ENDPOINTS)
    unknown = sorted({_canonical(r.endpoint) for r in host.app.url_map.iter_rules()} - known)
    assert not unknown, ("Endpoints missing from ENDPOINTS in tests/test_authorization_matrix.py "
                         f"(decide who may use them): {unknown}")


def _allowed(response, role):
    """A visitor who may use the route gets a real answer: no 401/403/404, no crash, and a
    redirect never leads to the login page."""
    assert response.status_code < 500, f"{role}: server error {response.status_code}"
    assert response.status_code not in (401, 403, 404), f"{role}: refused {response.status_code}"
    if response.status_code in (301, 302, 303):
        assert not response.headers["Location"].startswith("/login"), role


def _to_login(response):
    assert response.status_code == 302, response.status_code
    assert response.headers["Location"].startswith("/login?next="), response.headers["Location"]


@pytest.mark.parametrize("endpoint,method", CASES, ids=[f"{e}-{m}" for e, m in CASES])
def test_matrix(host, world, endpoint, method):
    spec = ENDPOINTS.get(_canonical(endpoint))
    if spec is None:
        pytest.skip("not classified yet: see test_every_endpoint_is_in_the_table")
    if spec.kind == "host":
        return
    rule = next(r for r in host.app.url_map.iter_rules() if r.endpoint == endpoint
                and method in r.methods)
    answers = {}
    for role in ROLES:
        client = _client(host, world, role)
        r = _request(host, client, rule, world, role, method=method)
        answers[role] = r
        if spec.kind in ("static", "public"):
            assert r.status_code < 400 or r.status_code == 422, (role, r.status_code)
            if r.status_code in (301, 302, 303):
                assert not r.headers["Location"].startswith("/login"), role
        elif role == "anonymous":
            _to_login(r)
        elif role == "nonagent":
            assert r.status_code == 403, r.status_code
        elif spec.kind == "agent" or role in ("admin",):
            _allowed(r, role)
        elif spec.kind == "admin":
            assert r.status_code == 403, (role, r.status_code)
        elif spec.kind == "mailbox":
            if role == "outsider":
                assert r.status_code == 404, r.status_code
                # Exactly like an id that does not exist: nothing leaks, not even existence.
                nothing = _request(host, client, rule, world, role, method=method, missing=True)
                assert nothing.status_code == 404
                assert r.get_data() == nothing.get_data()
                assert "Secret a" not in r.get_data(as_text=True)
            else:
                _allowed(r, role)
        else:  # pragma: no cover - a kind the table does not know
            pytest.fail(f"unknown kind {spec.kind!r}")

    if method == "POST" and spec.kind != "static":
        # Without the CSRF token a POST changes nothing, for whoever may otherwise use it.
        who = "admin" if spec.kind == "admin" else "member"
        if spec.kind == "public":
            who = "anonymous"
        client = _client(host, world, who)
        r = _request(host, client, rule, world, who, method=method, csrf=False)
        assert r.status_code == 400, (who, r.status_code)
        assert "did not come from this site" in r.get_data(as_text=True)


def test_dashboard_answers_carry_security_headers(host, world):
    """Every dashboard answer, including refusals and downloads, gets CSP and nosniff."""
    client = _client(host, world, "member")
    ids = world["objects"]["member"]
    for url in ("/support/", f"/support/tickets/{ids['ticket_id']}",
                f"/support/attachments/{ids['attachment_id']}",
                f"/support/messages/{ids['message_id']}/original",
                f"/support/tickets/{MISSING_ID}", "/support/settings/"):
        r = client.get(url)
        assert "script-src 'self'" in r.headers.get("Content-Security-Policy", ""), url
        assert r.headers.get("X-Content-Type-Options") == "nosniff", url


def test_bulk_actions_skip_tickets_of_mailboxes_the_agent_cannot_see(host, world):
    client = _client(host, world, "outsider")
    foreign = world["objects"]["member"]["ticket_id"]
    r = client.post("/support/bulk", data={"action": "status:closed", "ticket": str(foreign),
                                           "csrf_token": _token(client)})
    assert r.status_code == 302
    with host.app.app_context():
        assert host.db.session.get(host.inbox.models.Ticket, foreign).status != "closed"
    page = client.get("/support/", follow_redirects=True).get_data(as_text=True)
    assert "Secret a" not in page and "Secret b" not in page


def test_foreign_ids_leak_nothing_in_pages_the_outsider_may_open(host, world):
    """Filters and parameters carrying foreign ids show nothing of the other mailbox."""
    client = _client(host, world, "outsider")
    support = world["ids"]["support"]
    ticket = world["objects"]["member"]["ticket_id"]
    for url in (f"/support/?mailbox={support}", "/support/?q=Secret",
                f"/support/?mailbox={support}&q=secret", f"/support/tickets/{ticket}?view=merged"):
        page = client.get(url).get_data(as_text=True)
        assert "Secret a" not in page and "cust-a@example.org" not in page, url
