"""Rules, end to end: raw mail is ingested, ``process_pending`` runs the rules, and what a
user would notice (tags, assignee, status, activity, mail in the SMTP capture, webhook POSTs)
is checked. Conditions, actions, order, triggers and safety (bad patterns, failing actions,
imported history)."""
from __future__ import annotations

import json
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import sqlalchemy as sa

from shared_inbox.services.automation import process_pending
from shared_inbox.services.ingest import ingest
from test_poll import add_mailbox

SUPPORT = "support@example.com"
BILLING = "billing@example.com"


# --- helpers -------------------------------------------------------------------------------

def raw_mail(subject, body="Hello", sender="alice@example.org", name="Alice", msgid=None,
             attachment=None, **headers):
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{msgid or subject.replace(' ', '-')}@example.org>"
    for key, value in headers.items():
        msg[key.replace("_", "-")] = value
    msg.set_content(body)
    if attachment:
        msg.add_attachment(b"%PDF-1.4 invoice", maintype="application", subtype="pdf",
                           filename=attachment)
    return bytes(msg)


def receive(host, mailbox_id, raw, *, imported=False, now=None):
    """Ingest one raw mail as the poller would, run automation; the ticket id."""
    with host.app.app_context():
        mailbox = host.db.session.get(host.inbox.models.Mailbox, mailbox_id)
        message = ingest(mailbox, raw, imported=imported)
        assert message is not None
        ticket_id = message.ticket_id
        process_pending(now=now)
        return ticket_id


def add_rule(host, name, conditions=(), actions=(), *, mailbox_id=None, trigger="new",
             match="all", stop=False, active=True, position=None):
    with host.app.app_context():
        from shared_inbox.services.rules import next_position

        rule = host.inbox.models.Rule(
            name=name, mailbox_id=mailbox_id, trigger=trigger, match=match,
            stop_processing=stop, is_active=active, conditions=list(conditions),
            actions=list(actions), position=position if position is not None else next_position())
        host.db.session.add(rule)
        host.db.session.commit()
        return rule.id


def ticket_state(host, ticket_id):
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, ticket_id)
        return {"tags": sorted(tag.name for tag in t.tags), "status": t.status,
                "priority": t.priority,
                "assignee": host.inbox.display_user(t.assignee)["name"] if t.assignee else None}


def tags_of(host, ticket_id):
    return ticket_state(host, ticket_id)["tags"]


def rule_runs(host, ticket_id):
    """The summaries of the rule activities of a ticket, oldest first."""
    with host.app.app_context():
        m = host.inbox.models
        return [a.detail["summary"] for a in host.db.session.scalars(
            sa.select(m.Activity).where(m.Activity.ticket_id == ticket_id,
                                        m.Activity.action == "rule").order_by(m.Activity.id))]


def message_states(host):
    with host.app.app_context():
        m = host.inbox.models
        return dict(host.db.session.execute(
            sa.select(m.Message.subject, m.Message.automation_state)
            .where(m.Message.kind == "inbound")).all())


def tag(name):
    return {"type": "add_tag", "tag": name}


def member(host, mailbox_id, user_id, available=True):
    with host.app.app_context():
        host.db.session.add(host.inbox.models.MailboxMember(
            mailbox_id=mailbox_id, user_id=user_id, is_available=available))
        host.db.session.commit()


@pytest.fixture
def world(host, mail_server):
    """Support (Ada, Ben members; sends through the capture SMTP) and billing (Cara)."""
    support = add_mailbox(host, mail_server, SUPPORT)
    billing = add_mailbox(host, mail_server, BILLING)
    with host.app.app_context():
        m = host.inbox.models
        for box in (support, billing):
            mb = host.db.session.get(m.Mailbox, box)
            mb.smtp_host, mb.smtp_port = "127.0.0.1", mail_server.smtp_port
            mb.smtp_security = "plain"
            mb.smtp_username = mb.email_address
        host.db.session.commit()
    users = {
        "ada": host.add_user("ada@x.test", name="Ada"),
        "ben": host.add_user("ben@x.test", name="Ben"),
        "cara": host.add_user("cara@x.test", name="Cara"),
        "boss": host.add_user("boss@x.test", role="admin", name="Boss"),
        "shopper": host.add_user("shopper@x.test", role="customer", name="Shopper"),
    }
    member(host, support, users["ada"])
    member(host, support, users["ben"])
    member(host, billing, users["cara"])
    return {"support": support, "billing": billing, **users}


# --- conditions ----------------------------------------------------------------------------

CONDITIONS = {
    "subj-contains": {"field": "subject", "op": "contains", "value": "REFUND"},
    "subj-not": {"field": "subject", "op": "not_contains", "value": "refund"},
    "subj-is": {"field": "subject", "op": "is", "value": "refund please"},
    "subj-isnot": {"field": "subject", "op": "is_not", "value": "refund please"},
    "subj-re": {"field": "subject", "op": "matches", "value": r"order\s*#?\d{4}"},
    "body-contains": {"field": "body", "op": "contains", "value": "broken"},
    "body-not": {"field": "body", "op": "not_contains", "value": "broken"},
    "body-re": {"field": "body", "op": "matches", "value": r"^urgent\b"},
    "from-is": {"field": "from", "op": "is", "value": "vip@bigcorp.example"},
    "from-isnot": {"field": "from", "op": "is_not", "value": "vip@bigcorp.example"},
    "from-domain": {"field": "from", "op": "domain_is", "value": "bigcorp.example"},
    "from-contains": {"field": "from", "op": "contains", "value": "bigcorp"},
    "from-not": {"field": "from", "op": "not_contains", "value": "bigcorp"},
    "from-re": {"field": "from", "op": "matches", "value": r"^vip@"},
    "has-file": {"field": "has_attachment", "op": "is_true"},
    "no-file": {"field": "has_attachment", "op": "is_false"},
    "is-reply": {"field": "is_reply", "op": "is_true"},
    "not-reply": {"field": "is_reply", "op": "is_false"},
}


def test_every_message_condition_against_two_mails(host, world):
    for name, cond in CONDITIONS.items():
        add_rule(host, name, [cond], [tag(name)], trigger="both")
    first = receive(host, world["support"], raw_mail(
        "Refund please", "Urgent: the kettle arrived broken", sender="vip@bigcorp.example",
        msgid="m1", attachment="invoice.pdf"))
    second = receive(host, world["support"], raw_mail(
        "Where is order #1234?", "Just wondering.\n\nUrgent? no", sender="sam@home.example",
        msgid="m2"))
    assert tags_of(host, first) == sorted([
        "subj-contains", "subj-is", "body-contains", "body-re", "from-is", "from-domain",
        "from-contains", "from-re", "has-file", "not-reply"])
    assert tags_of(host, second) == sorted([
        "subj-not", "subj-isnot", "subj-re", "body-not", "from-isnot", "from-not", "no-file",
        "not-reply"])
    # A customer reply to the first ticket: "is a reply" now holds, and the new text
    # (not the quoted history) is what "body" looks at.
    receive(host, world["support"], raw_mail(
        "Re: Refund please", "Thanks!\n\n> Urgent: the kettle arrived broken",
        sender="vip@bigcorp.example", msgid="m3", In_Reply_To="<m1@example.org>"))
    assert "is-reply" in tags_of(host, first)
    runs = rule_runs(host, first)
    assert "rule is-reply matched: tagged is-reply" in runs
    assert "rule body-not matched: tagged body-not" in runs  # the reply's new text


def test_mailbox_condition_and_rule_scope(host, world):
    add_rule(host, "cond-is", [{"field": "mailbox", "op": "is", "value": world["billing"]}],
             [tag("billing-cond")])
    add_rule(host, "cond-not", [{"field": "mailbox", "op": "is_not", "value": world["billing"]}],
             [tag("not-billing")])
    add_rule(host, "scoped", [], [tag("support-only")], mailbox_id=world["support"])
    s = receive(host, world["support"], raw_mail("Hi support", msgid="s1"))
    b = receive(host, world["billing"], raw_mail("Hi billing", msgid="b1"))
    assert tags_of(host, s) == ["not-billing", "support-only"]
    assert tags_of(host, b) == ["billing-cond"]


@pytest.fixture
def context_values(host):
    """The host's customer-context provider: values per customer address."""
    values = {
        "vip@bigcorp.example": {"orders.count": 12, "vip": True, "plan": "Gold",
                                "tags": ["wholesale", "eu"]},
        "sam@home.example": {"orders.count": 1, "vip": False, "plan": "free"},
    }
    host.app.config["SHARED_INBOX_CUSTOMER_CONTEXT_CACHE_SECONDS"] = 0

    @host.inbox.customer_context
    def shop(info):
        return {"title": "Shop", "values": values.get(info.email, {})}

    return values


def test_customer_context_conditions(host, world, context_values):
    cases = {
        "many-orders": {"field": "customer", "key": "orders.count", "op": "greater", "value": "5"},
        "few-orders": {"field": "customer", "key": "orders.count", "op": "less", "value": "2"},
        "one-order": {"field": "customer", "key": "orders.count", "op": "is", "value": "1"},
        "not-gold": {"field": "customer", "key": "plan", "op": "is_not", "value": "gold"},
        "wholesale": {"field": "customer", "key": "tags", "op": "contains", "value": "wholesale"},
        "vip": {"field": "customer", "key": "vip", "op": "is_true"},
        "not-vip": {"field": "customer", "key": "vip", "op": "is_false"},
        "vip-is-yes": {"field": "customer", "key": "vip", "op": "is", "value": "yes"},
    }
    for name, cond in cases.items():
        add_rule(host, name, [cond], [tag(name)])
    vip = receive(host, world["support"], raw_mail("Q1", sender="vip@bigcorp.example",
                                                   msgid="c1"))
    sam = receive(host, world["support"], raw_mail("Q2", sender="sam@home.example", msgid="c2"))
    nobody = receive(host, world["support"], raw_mail("Q3", sender="new@else.example",
                                                      msgid="c3"))
    assert tags_of(host, vip) == ["many-orders", "vip", "vip-is-yes", "wholesale"]
    assert tags_of(host, sam) == ["few-orders", "not-gold", "not-vip", "one-order"]
    # No values at all: only "is not" and "is false" hold.
    assert tags_of(host, nobody) == ["not-gold", "not-vip"]


def test_all_and_any(host, world):
    conds = [{"field": "subject", "op": "contains", "value": "refund"},
             {"field": "from", "op": "domain_is", "value": "bigcorp.example"}]
    add_rule(host, "both", conds, [tag("all")], match="all")
    add_rule(host, "either", conds, [tag("any")], match="any")
    add_rule(host, "no conditions", [], [tag("always")])
    t1 = receive(host, world["support"], raw_mail("Refund", sender="a@bigcorp.example", msgid="a1"))
    t2 = receive(host, world["support"], raw_mail("Refund", sender="a@small.example", msgid="a2"))
    t3 = receive(host, world["support"], raw_mail("Hello", sender="a@small.example", msgid="a3"))
    assert tags_of(host, t1) == ["all", "always", "any"]
    assert tags_of(host, t2) == ["always", "any"]
    assert tags_of(host, t3) == ["always"]
    assert rule_runs(host, t1)[0] == "rule both matched: tagged all"
    with host.app.app_context():
        m = host.inbox.models
        run = host.db.session.scalar(sa.select(m.Activity).where(
            m.Activity.ticket_id == t2, m.Activity.action == "rule"))
        assert run.detail["conditions"] == ['subject contains "refund"']


# --- order, stop, triggers, imported -------------------------------------------------------

def test_rules_run_in_order_and_stop_processing(host, world):
    first = add_rule(host, "to Ada", [], [{"type": "assign", "user_id": str(world["ada"])}],
                     position=1)
    add_rule(host, "to Ben", [], [{"type": "assign", "user_id": str(world["ben"])}], position=2)
    t1 = receive(host, world["support"], raw_mail("One", msgid="o1"))
    assert ticket_state(host, t1)["assignee"] == "Ben"  # both ran, Ben last
    assert rule_runs(host, t1) == ["rule to Ada matched: assigned Ada",
                                   "rule to Ben matched: assigned Ben"]
    with host.app.app_context():
        host.db.session.get(host.inbox.models.Rule, first).stop_processing = True
        host.db.session.commit()
    t2 = receive(host, world["support"], raw_mail("Two", msgid="o2"))
    assert ticket_state(host, t2)["assignee"] == "Ada"
    assert rule_runs(host, t2) == ["rule to Ada matched: assigned Ada"]


def test_disabled_rules_do_not_run(host, world):
    add_rule(host, "off", [], [tag("off")], active=False)
    t = receive(host, world["support"], raw_mail("Hi", msgid="d1"))
    assert tags_of(host, t) == [] and rule_runs(host, t) == []


def test_trigger_new_reply_or_both(host, world):
    add_rule(host, "new", [], [tag("on-new")], trigger="new")
    add_rule(host, "reply", [], [tag("on-reply")], trigger="reply")
    add_rule(host, "both", [], [tag("on-both")], trigger="both")
    t = receive(host, world["support"], raw_mail("Kettle", msgid="k1"))
    assert tags_of(host, t) == ["on-both", "on-new"]
    with host.app.app_context():  # start over, so the reply's own effects show
        m = host.inbox.models
        host.db.session.get(m.Ticket, t).tags = []
        host.db.session.commit()
    again = receive(host, world["support"], raw_mail("Re: Kettle", msgid="k2",
                                                     In_Reply_To="<k1@example.org>"))
    assert again == t
    assert tags_of(host, t) == ["on-both", "on-reply"]


def test_an_out_of_office_reply_is_no_customer_reply(host, world):
    add_rule(host, "on reply", [], [tag("replied")], trigger="reply")
    add_rule(host, "auto new", [{"field": "subject", "op": "contains", "value": "digest"}],
             [{"type": "mark_spam"}])
    t = receive(host, world["support"], raw_mail("Kettle", msgid="q1"))
    assert receive(host, world["support"], raw_mail("Automatic reply: Kettle", msgid="q2",
                                                    In_Reply_To="<q1@example.org>",
                                                    Auto_Submitted="auto-replied")) == t
    assert tags_of(host, t) == [] and rule_runs(host, t) == []
    # Automatic mail that opens a ticket (a newsletter) still runs the new-ticket rules.
    digest = receive(host, world["support"], raw_mail("Weekly digest", msgid="q3",
                                                      List_Id="<news.example.org>"))
    assert ticket_state(host, digest)["status"] == "spam"


def test_imported_mail_never_runs_rules(host, world):
    add_rule(host, "everything", [], [tag("ruled"), {"type": "mark_spam"}], trigger="both")
    t = receive(host, world["support"], raw_mail("Old history", msgid="h1"), imported=True)
    assert message_states(host)["Old history"] == "skipped"
    assert ticket_state(host, t)["tags"] == [] and ticket_state(host, t)["status"] == "open"
    assert rule_runs(host, t) == []


# --- actions -------------------------------------------------------------------------------

def test_tag_assign_status_priority_and_one_activity_per_rule(host, world):
    add_rule(host, "VIP", [{"field": "from", "op": "domain_is", "value": "bigcorp.example"}], [
        tag("vip"), {"type": "assign", "user_id": str(world["ada"])},
        {"type": "set_status", "status": "pending"}, {"type": "set_priority", "priority": "high"},
    ])
    t = receive(host, world["support"], raw_mail("Help", sender="boss@bigcorp.example",
                                                 msgid="v1"))
    assert ticket_state(host, t) == {"tags": ["vip"], "status": "pending", "priority": "high",
                                     "assignee": "Ada"}
    assert rule_runs(host, t) == [
        "rule VIP matched: tagged vip, assigned Ada, status pending, priority high"]
    with host.app.app_context():
        m = host.inbox.models
        actions = [a.action for a in host.db.session.scalars(
            sa.select(m.Activity).where(m.Activity.ticket_id == t).order_by(m.Activity.id))]
    # The ordinary activities too, by "system" (no actor), like an agent's would be.
    assert {"tag_added", "assigned", "status", "priority", "rule"} <= set(actions)


def test_round_robin_among_available_members(host, world):
    dan = host.add_user("dan@x.test", name="Dan")
    member(host, world["support"], dan, available=False)  # away: skipped
    member(host, world["support"], world["shopper"])  # not an agent: skipped
    rule = add_rule(host, "share", [], [{"type": "assign_round_robin"}])
    names = [ticket_state(host, receive(host, world["support"], raw_mail(f"Q{i}", msgid=f"r{i}"))
                          )["assignee"] for i in range(4)]
    assert names == ["Ada", "Ben", "Ada", "Ben"]  # the admin (Boss) is no member: never
    with host.app.app_context():
        m = host.inbox.models
        assert host.db.session.get(m.Rule, rule).round_robin_last == str(world["ben"])
        host.db.session.scalar(sa.select(m.MailboxMember).where(
            m.MailboxMember.user_id == dan)).is_available = True
        host.db.session.commit()
    nxt = receive(host, world["support"], raw_mail("Q9", msgid="r9"))
    assert ticket_state(host, nxt)["assignee"] == "Dan"


def test_round_robin_without_members_is_noted_not_fatal(host, world):
    add_rule(host, "share", [], [{"type": "assign_round_robin"}, tag("shared")])
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.execute(sa.delete(m.MailboxMember))
        host.db.session.commit()
    t = receive(host, world["support"], raw_mail("Q", msgid="rr"))
    assert ticket_state(host, t)["assignee"] is None and tags_of(host, t) == ["shared"]
    assert rule_runs(host, t) == [
        "rule share matched: could not assign round robin: no available agent in this mailbox, "
        "tagged shared"]


def test_a_failing_action_is_noted_and_the_others_still_run(host, world):
    # Cara is no member of support: assignment is refused, the tag still lands.
    add_rule(host, "bad assign", [], [{"type": "assign", "user_id": str(world["cara"])},
                                      tag("after"), {"type": "notify_webhook", "webhook_id": 999}])
    t = receive(host, world["support"], raw_mail("Q", msgid="f1"))
    assert message_states(host)["Q"] == "done"
    assert ticket_state(host, t)["assignee"] is None and tags_of(host, t) == ["after"]
    (run,) = rule_runs(host, t)
    assert run.startswith("rule bad assign matched: could not assign: Cara cannot see the "
                          "mailbox Support")
    assert run.endswith("tagged after, could not notify webhook: the webhook no longer exists")


def test_a_disabled_webhook_is_not_notified(host, world, hook_server):
    with host.app.app_context():
        m = host.inbox.models
        hook = m.Webhook(name="Old CRM", url=f"http://127.0.0.1:{hook_server.server_port}/",
                         events=[], is_active=False)
        host.db.session.add(hook)
        host.db.session.commit()
        hook_id = hook.id
    add_rule(host, "crm", [], [{"type": "notify_webhook", "webhook_id": hook_id}])
    t = receive(host, world["support"], raw_mail("Q", msgid="wd1"))
    assert rule_runs(host, t) == [
        "rule crm matched: could not notify webhook: the webhook Old CRM is disabled"]
    with host.app.app_context():
        assert host.db.session.scalar(sa.select(sa.func.count()).select_from(
            host.inbox.models.WebhookDelivery)) == 0


def enable_ack(host, mailbox_id):
    with host.app.app_context():
        mb = host.db.session.get(host.inbox.models.Mailbox, mailbox_id)
        mb.autoreply_ack_enabled = True
        host.db.session.commit()


def outbound(host, ticket_id):
    with host.app.app_context():
        m = host.inbox.models
        return [(msg.subject, msg.headers.get("_auto_reason"), msg.body_text)
                for msg in host.db.session.scalars(sa.select(m.Message).where(
                    m.Message.ticket_id == ticket_id, m.Message.kind == "outbound")
                    .order_by(m.Message.id))]


def test_mark_spam_and_no_auto_reply_suppress_the_acknowledgement(host, world):
    enable_ack(host, world["support"])
    add_rule(host, "spam", [{"field": "subject", "op": "contains", "value": "casino"}],
             [{"type": "mark_spam"}])
    add_rule(host, "quiet", [{"field": "subject", "op": "contains", "value": "newsletter"}],
             [{"type": "no_auto_reply"}])
    spam = receive(host, world["support"], raw_mail("Casino bonus", msgid="x1"))
    quiet = receive(host, world["support"], raw_mail("Newsletter signup", msgid="x2"))
    normal = receive(host, world["support"], raw_mail("Real question", msgid="x3"))
    assert ticket_state(host, spam)["status"] == "spam"
    assert rule_runs(host, spam) == ["rule spam matched: marked spam"]
    assert rule_runs(host, quiet) == ["rule quiet matched: no automatic reply"]
    assert outbound(host, spam) == [] and outbound(host, quiet) == []
    assert len(outbound(host, normal)) == 1  # the acknowledgement still works otherwise


def test_send_saved_reply_goes_out_through_smtp_threaded(host, world, mail_server):
    from shared_inbox.services.outbox import deliver_due

    with host.app.app_context():
        m = host.inbox.models
        reply = m.SavedReply(title="Returns", body="Hello {{ customer.first_name }},\n\n"
                             "returns are free within 30 days (ticket #{{ ticket.number }}).")
        host.db.session.add(reply)
        host.db.session.commit()
        reply_id = reply.id
    add_rule(host, "returns", [{"field": "body", "op": "contains", "value": "return"}],
             [{"type": "send_saved_reply", "saved_reply_id": reply_id}])
    t = receive(host, world["support"], raw_mail("Question", "How do I return it?",
                                                 name="Alice Smith", msgid="sr1"))
    assert rule_runs(host, t) == ["rule returns matched: sent the saved reply Returns"]
    with host.app.app_context():
        assert deliver_due(force=True).sent == 1
    mail_server.wait_for_sent(1)
    sent = message_from_bytes(mail_server.sent[0].data, policy=policy.default)
    assert mail_server.sent[0].rcpt_tos == ["alice@example.org"]
    assert sent["In-Reply-To"] == "<sr1@example.org>"
    assert sent["Auto-Submitted"] == "auto-replied"
    assert f"[#{t}]" in sent["Subject"]
    assert f"Hello Alice,\n\nreturns are free within 30 days (ticket #{t})." in \
        sent.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


def test_saved_reply_respects_loop_protection(host, world, mail_server):
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.add(m.SavedReply(title="Thanks", body="Thanks!"))
        host.db.session.commit()
        reply_id = host.db.session.scalar(sa.select(m.SavedReply.id))
    add_rule(host, "thank", [], [{"type": "send_saved_reply", "saved_reply_id": reply_id}])
    t = receive(host, world["support"], raw_mail("Out of office", msgid="loop1",
                                                 Auto_Submitted="auto-replied"))
    assert rule_runs(host, t) == ["rule thank matched: saved reply Thanks withheld "
                                  "(loop protection)"]
    assert outbound(host, t) == []


def test_notify_by_email_reaches_the_team_over_smtp(host, world, mail_server):
    from shared_inbox.services.outbox import deliver_due

    add_rule(host, "alert", [{"field": "subject", "op": "contains", "value": "lawyer"}], [
        {"type": "assign", "user_id": str(world["ada"])},
        {"type": "notify_email", "to": ["assignee", "owner@acme.test"]}])
    host.app.config["SHARED_INBOX_EXTERNAL_URL"] = "https://shop.example"
    t = receive(host, world["support"], raw_mail("My lawyer will call", msgid="n1"))
    assert rule_runs(host, t) == [
        "rule alert matched: assigned Ada, notified ada@x.test, owner@acme.test"]
    with host.app.app_context():
        deliver_due(force=True)
    mail_server.wait_for_sent(1)
    (sent,) = mail_server.sent
    assert sorted(sent.rcpt_tos) == ["ada@x.test", "owner@acme.test"]
    msg = message_from_bytes(sent.data, policy=policy.default)
    assert msg["Subject"] == f"[#{t}] Rule alert: My lawyer will call"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "alice@example.org" in text
    assert f"https://shop.example/support/tickets/{t}" in text


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.headers["X-Shared-Inbox-Event"], json.loads(body)))
        self.server.raw.append((body, self.headers.get("X-Shared-Inbox-Signature")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook_server():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []
    server.raw = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_notify_by_webhook_posts_to_a_real_server(host, world, hook_server):
    """The rule's webhook is signed like any event and shaped like them (``data.ticket``),
    with the rule and the triggering message (never its text)."""
    from shared_inbox.services import webhooks

    with host.app.app_context():
        m = host.inbox.models
        hook = m.Webhook(name="CRM", url=f"http://127.0.0.1:{hook_server.server_port}/in",
                         events=[])  # no signal event chosen: only the rule sends to it
        hook.secret = "crm-secret-123"
        host.db.session.add(hook)
        host.db.session.commit()
        hook_id = hook.id
    add_rule(host, "crm", [], [tag("crm"), {"type": "notify_webhook", "webhook_id": hook_id}])
    t = receive(host, world["support"], raw_mail("Order 55", body="My card number is secret",
                                                 msgid="w1"))
    assert rule_runs(host, t) == ["rule crm matched: tagged crm, webhook CRM"]
    with host.app.app_context():
        assert webhooks.deliver_due().delivered == 1
    ((event, body),) = hook_server.received
    ((raw, signature),) = hook_server.raw
    assert webhooks.verify("crm-secret-123", raw, signature)
    assert not webhooks.verify("another-secret", raw, signature)
    assert event == body["event"] == "rule.matched"
    data = body["data"]
    assert data["ticket"]["id"] == t and data["ticket"]["tags"] == ["crm"]
    assert data["ticket"]["customer"]["email"] == "alice@example.org"
    assert data["ticket"]["url"].endswith(f"/support/tickets/{t}")
    assert data["rule"]["name"] == "crm"
    assert data["message"]["from_email"] == "alice@example.org" and "text" not in data["message"]
    assert "My card number" not in raw.decode()
    assert body["text"].startswith(f"Rule matched (crm): #{data['ticket']['number']} Order 55 "
                                   "(alice@example.org)")


def test_escalate_action_makes_it_urgent_and_tells_the_assignee(host, world, mail_server):
    from shared_inbox.services.outbox import deliver_due

    add_rule(host, "hot", [{"field": "subject", "op": "contains", "value": "down"}],
             [{"type": "assign", "user_id": str(world["ben"])}, {"type": "escalate"}])
    t = receive(host, world["support"], raw_mail("Site is down", msgid="e1"))
    assert ticket_state(host, t)["priority"] == "urgent"
    assert rule_runs(host, t) == ["rule hot matched: assigned Ben, escalated"]
    with host.app.app_context():
        deliver_due(force=True)
    mail_server.wait_for_sent(1)
    assert [s.rcpt_tos for s in mail_server.sent] == [["ben@x.test"]]
    msg = message_from_bytes(mail_server.sent[0].data, policy=policy.default)
    assert msg["Subject"] == f"[#{t}] Escalated: Site is down"


# --- patterns ------------------------------------------------------------------------------

def test_bad_or_slow_patterns_never_break_ingestion(host, world):
    # Saved around the form (e.g. in SQL): a broken pattern and a catastrophic one.
    add_rule(host, "broken", [{"field": "subject", "op": "matches", "value": "(unclosed"}],
             [tag("broken")])
    add_rule(host, "slow", [{"field": "body", "op": "matches", "value": r"^(a+)+$"}],
             [tag("slow")])
    add_rule(host, "fine", [], [tag("fine")])
    started = time.monotonic()
    t = receive(host, world["support"], raw_mail("Hello", "a" * 5000 + "!", msgid="p1"))
    elapsed = time.monotonic() - started
    assert message_states(host)["Hello"] == "done"
    assert tags_of(host, t) == ["fine"]
    assert elapsed < 30, elapsed  # a guard against a hang, not a speed measurement


def test_check_pattern_refuses_bad_and_overlong_patterns(host):
    from shared_inbox.services.rules import RuleError, check_pattern, clean_condition

    with host.app.app_context():
        for bad in ("(unclosed", "[z-a]", "x" * 301, ""):
            with pytest.raises(RuleError):
                check_pattern(bad)
        assert clean_condition({"field": "subject", "op": "matches", "value": r"\border\b"})
        with pytest.raises(RuleError) as info:
            clean_condition({"field": "has_attachment", "op": "contains", "value": "x"})
        assert info.value.part == "op"
