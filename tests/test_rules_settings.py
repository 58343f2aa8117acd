"""Rules settings: admins only, CSRF, the form (rows, errors beside the field with the input
kept), order, enable/disable, delete, and the dry run on the last tickets."""
from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa

from test_rules import add_rule, raw_mail, receive, rule_runs, tags_of
from test_rules import world  # noqa: F401 - fixture
from test_ticket_actions import token


@pytest.fixture
def admin(host, client, world):  # noqa: F811
    host.login(client, world["boss"])
    return token(client)


def rules_in_order(host):
    with host.app.app_context():
        from shared_inbox.services.rules import ordered_rules

        return [(r.name, r.is_active) for r in ordered_rules()]


def field_error(page: str, name: str) -> str | None:
    found = re.search(rf'id="si-{re.escape(name)}-error">([^<]*)<', page)
    return found.group(1) if found else None


def form(tok, **fields):
    data = {"csrf_token": tok, "name": "VIP", "mailbox_id": "", "trigger": "new", "match": "all",
            "is_active": "1"}
    data.update(fields)
    return data


def test_admin_creates_a_rule_that_then_runs_on_new_mail(host, client, admin, world):  # noqa: F811
    r = client.post("/support/settings/rules/new", data=form(
        admin, **{
            "cond-0-field": "from", "cond-0-op": "domain_is", "cond-0-key": "",
            "cond-0-value": "@BigCorp.example",
            "cond-1-field": "", "cond-1-op": "", "cond-1-key": "", "cond-1-value": "",
            "act-0-type": "add_tag", "act-0-value": "vip",
            "act-1-type": f"assign:{world['ada']}", "act-1-value": "",
            "act-2-type": "", "act-2-value": "",
        }))
    assert r.status_code == 302 and r.headers["Location"].endswith("/support/settings/rules/")
    with host.app.app_context():
        rule = host.db.session.scalar(sa.select(host.inbox.models.Rule))
        assert rule.conditions == [{"field": "from", "op": "domain_is",
                                    "value": "bigcorp.example"}]
        assert rule.actions == [{"type": "add_tag", "tag": "vip"},
                                {"type": "assign", "user_id": str(world["ada"])}]
        assert rule.created_by_id == world["boss"]
    page = html.unescape(client.get("/support/settings/rules/").get_data(as_text=True))
    assert 'from address domain is "bigcorp.example"' in page
    assert 'add the tag "vip"' in page and "assign to Ada" in page
    t = receive(host, world["support"], raw_mail("Help", sender="ceo@bigcorp.example",
                                                 msgid="f1"))
    assert tags_of(host, t) == ["vip"]
    assert rule_runs(host, t) == ["rule VIP matched: tagged vip, assigned Ada"]


def test_errors_are_shown_beside_the_field_and_the_input_is_kept(host, client, admin):
    r = client.post("/support/settings/rules/new", data=form(
        admin, name="", **{
            "cond-0-field": "subject", "cond-0-op": "matches", "cond-0-value": "(unclosed",
            "cond-1-field": "has_attachment", "cond-1-op": "contains", "cond-1-value": "x",
            "cond-2-field": "customer", "cond-2-op": "greater", "cond-2-key": "",
            "cond-2-value": "many",
            "act-0-type": "add_tag", "act-0-value": "",
            "act-1-type": "notify_email", "act-1-value": "ops@acme.test, not-an-address",
        }))
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert field_error(page, "name") == "Name is required."
    assert field_error(page, "cond-0-value").startswith("This is not a valid regular expression")
    assert field_error(page, "cond-1-op").startswith("Has an attachment can be compared with")
    assert field_error(page, "cond-2-key").startswith("Name the customer value")
    assert field_error(page, "act-0-value") == "Enter a tag name."
    assert field_error(page, "act-1-value") == \
        "not-an-address is not an email address (or assignee, admins)."
    # What was typed is still there.
    assert 'name="cond-0-value" value="(unclosed"' in page
    assert 'value="ops@acme.test, not-an-address"' in page
    assert re.search(r'name="cond-1-field"[^>]*>.*?<option value="has_attachment" selected',
                     page, re.S)
    assert rules_in_order(host) == []


def test_a_rule_needs_an_action_and_a_number_for_greater(host, client, admin):
    r = client.post("/support/settings/rules/new", data=form(admin, **{
        "cond-0-field": "customer", "cond-0-op": "greater", "cond-0-key": "orders.count",
        "cond-0-value": "lots", "act-0-type": "", "act-0-value": ""}))
    page = r.get_data(as_text=True)
    assert r.status_code == 400
    assert field_error(page, "cond-0-value") == "Enter a number, like 3 or 99.50."
    assert field_error(page, "actions") == "Add at least one action."


def test_add_row_buttons_keep_the_input_and_save_nothing(host, client, admin):
    r = client.post("/support/settings/rules/new", data=form(admin, **{
        "do": "add_condition", "cond-0-field": "subject", "cond-0-op": "contains",
        "cond-0-value": "refund", "act-0-type": "add_tag", "act-0-value": "money"}))
    page = r.get_data(as_text=True)
    assert r.status_code == 200
    assert 'name="cond-1-field"' in page and 'name="cond-2-field"' not in page
    assert 'value="refund"' in page and 'value="money"' in page
    r = client.post("/support/settings/rules/new", data=form(admin, **{
        "do": "add_action", "act-0-type": "add_tag", "act-0-value": "money"}))
    assert 'name="act-1-type"' in r.get_data(as_text=True)
    assert rules_in_order(host) == []


def test_edit_shows_the_rule_and_saves_changes(host, client, admin, world):  # noqa: F811
    rule = add_rule(host, "Billing", [{"field": "mailbox", "op": "is",
                                       "value": world["billing"]}], [{"type": "mark_spam"}])
    page = client.get(f"/support/settings/rules/{rule}/edit").get_data(as_text=True)
    assert 'value="billing@example.com"' in page  # the mailbox, as a person types it
    assert '<option value="mark_spam" selected' in page
    r = client.post(f"/support/settings/rules/{rule}/edit", data=form(admin, **{
        "name": "Billing v2", "trigger": "both", "match": "any", "stop_processing": "1",
        "cond-0-field": "mailbox", "cond-0-op": "is", "cond-0-value": "Billing",
        "act-0-type": "set_priority:urgent", "act-0-value": ""}))
    assert r.status_code == 302
    with host.app.app_context():
        saved = host.db.session.get(host.inbox.models.Rule, rule)
        assert (saved.name, saved.trigger, saved.match, saved.stop_processing) == (
            "Billing v2", "both", "any", True)
        assert saved.conditions == [{"field": "mailbox", "op": "is", "value": world["billing"]}]
        assert saved.actions == [{"type": "set_priority", "priority": "urgent"}]


def test_order_enable_disable_and_delete(host, client, admin):
    a = add_rule(host, "A", [], [{"type": "no_auto_reply"}])
    b = add_rule(host, "B", [], [{"type": "no_auto_reply"}])
    c = add_rule(host, "C", [], [{"type": "no_auto_reply"}])
    assert client.post(f"/support/settings/rules/{c}/move",
                       data={"csrf_token": admin, "direction": "up"}).status_code == 302
    assert [n for n, _ in rules_in_order(host)] == ["A", "C", "B"]
    client.post(f"/support/settings/rules/{a}/move", data={"csrf_token": admin,
                                                          "direction": "down"})
    assert [n for n, _ in rules_in_order(host)] == ["C", "A", "B"]
    # Moving the first one up changes nothing.
    client.post(f"/support/settings/rules/{c}/move", data={"csrf_token": admin,
                                                          "direction": "up"})
    assert [n for n, _ in rules_in_order(host)] == ["C", "A", "B"]
    page = client.get("/support/settings/rules/").get_data(as_text=True)
    assert re.findall(r"<h2>(\w+)", page)[:3] == ["C", "A", "B"]
    client.post(f"/support/settings/rules/{b}/toggle", data={"csrf_token": admin})
    assert rules_in_order(host)[2] == ("B", False)
    assert "disabled" in client.get("/support/settings/rules/").get_data(as_text=True)
    client.post(f"/support/settings/rules/{b}/toggle", data={"csrf_token": admin})
    assert rules_in_order(host)[2] == ("B", True)
    client.post(f"/support/settings/rules/{a}/delete", data={"csrf_token": admin})
    assert [n for n, _ in rules_in_order(host)] == ["C", "B"]
    assert client.get(f"/support/settings/rules/{a}/edit").status_code == 404


def test_dry_run_of_the_typed_rule_shows_matches_and_saves_nothing(host, client, admin,
                                                                     world):  # noqa: F811
    refund = receive(host, world["support"], raw_mail("Refund <script>x</script>",
                                                      msgid="d1"))
    receive(host, world["support"], raw_mail("Just hello", msgid="d2"))
    other = receive(host, world["billing"], raw_mail("Refund for billing", msgid="d3"))
    r = client.post("/support/settings/rules/new", data=form(admin, **{
        "do": "dry_run", "mailbox_id": str(world["support"]),
        "cond-0-field": "subject", "cond-0-op": "contains", "cond-0-value": "refund",
        "act-0-type": "add_tag", "act-0-value": "money"}))
    page = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "Checked the first customer message of the last 2 tickets" in page
    assert "1 would match" in page
    assert f'/support/tickets/{refund}"' in page and f'/support/tickets/{other}"' not in page
    assert 'subject contains "refund"' in html.unescape(page)
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page
    assert 'value="refund"' in page  # the form is still there, as typed
    assert rules_in_order(host) == [] and tags_of(host, refund) == []


def test_dry_run_of_a_saved_rule(host, client, admin, world):  # noqa: F811
    t1 = receive(host, world["support"], raw_mail("Invoice", sender="a@bigcorp.example",
                                                  msgid="s1", attachment="inv.pdf"))
    receive(host, world["support"], raw_mail("Invoice", sender="b@bigcorp.example", msgid="s2"))
    rule = add_rule(host, "Files", [{"field": "has_attachment", "op": "is_true"},
                                    {"field": "from", "op": "domain_is",
                                     "value": "bigcorp.example"}], [{"type": "mark_spam"}],
                    active=False, trigger="reply")
    page = client.get(f"/support/settings/rules/{rule}/dry-run").get_data(as_text=True)
    assert "1 would match" in page
    assert "this rule runs on customer replies" in page
    assert f'/support/tickets/{t1}"' in page
    assert "has an attachment" in page
    with host.app.app_context():
        assert host.db.session.get(host.inbox.models.Ticket, t1).status == "open"


RULE_URLS = [
    ("GET", "/support/settings/rules/"),
    ("GET", "/support/settings/rules/new"),
    ("POST", "/support/settings/rules/new"),
    ("GET", "/support/settings/rules/{id}/edit"),
    ("POST", "/support/settings/rules/{id}/edit"),
    ("POST", "/support/settings/rules/{id}/move"),
    ("POST", "/support/settings/rules/{id}/toggle"),
    ("POST", "/support/settings/rules/{id}/delete"),
    ("GET", "/support/settings/rules/{id}/dry-run"),
    ("POST", "/support/settings/rules/availability/{member}"),
]


def first_member_id(host):
    with host.app.app_context():
        m = host.inbox.models
        return host.db.session.scalar(sa.select(sa.func.min(m.MailboxMember.id)))


def test_only_admins_reach_the_rules_settings(host, client, world):  # noqa: F811
    rule = add_rule(host, "R", [], [{"type": "no_auto_reply"}])
    for method, url in RULE_URLS:
        url = url.format(id=rule, member=first_member_id(host))
        anonymous = client.open(url, method=method, data={})
        assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
    for who in ("ada", "shopper"):
        host.login(client, world[who])
        tok = token(client)
        for method, url in RULE_URLS:
            r = client.open(url.format(id=rule, member=first_member_id(host)), method=method,
                            data={"csrf_token": tok, "direction": "up", "available": "0"})
            assert r.status_code == 403, (who, method, url)
    assert [n for n, _ in rules_in_order(host)] == ["R"]
    host.login(client, world["boss"])
    assert client.get("/support/settings/").get_data(as_text=True).count(
        'href="/support/settings/rules/"') == 1


def test_posts_without_the_csrf_token_are_refused(host, client, admin):
    rule = add_rule(host, "R", [], [{"type": "no_auto_reply"}])
    for method, url in RULE_URLS:
        if method != "POST":
            continue
        r = client.post(url.format(id=rule, member=first_member_id(host)), data=form(
            "wrong-token", **{
            "act-0-type": "no_auto_reply", "direction": "up"}))
        assert r.status_code == 400, url
    assert rules_in_order(host) == [("R", True)]


def test_the_mailbox_is_named_in_the_list(host, client, admin, world):  # noqa: F811
    add_rule(host, "Only support", [], [{"type": "no_auto_reply"}], mailbox_id=world["support"])
    page = client.get("/support/settings/rules/").get_data(as_text=True)
    assert "Only support" in page and '<span class="si-badge">Support</span>' in page


def test_actions_that_cannot_work_for_the_chosen_mailbox_are_refused(host, client, admin,
                                                                     world):  # noqa: F811
    with host.app.app_context():
        m = host.inbox.models
        reply = m.SavedReply(title="Billing only", body="Hi", mailbox_id=world["billing"])
        host.db.session.add(reply)
        host.db.session.commit()
        reply_id = reply.id
    r = client.post("/support/settings/rules/new", data=form(admin, **{
        "mailbox_id": str(world["support"]),
        "act-0-type": f"assign:{world['cara']}", "act-0-value": "",
        "act-1-type": f"send_saved_reply:{reply_id}", "act-1-value": ""}))
    page = r.get_data(as_text=True)
    assert r.status_code == 400
    assert field_error(page, "act-0-type") == \
        "Cara is not a member of Support; add them as a member first."
    assert field_error(page, "act-1-type").startswith(
        "This saved reply is only for the mailbox Billing")
    # For the billing mailbox both are fine.
    r = client.post("/support/settings/rules/new", data=form(admin, **{
        "mailbox_id": str(world["billing"]),
        "act-0-type": f"assign:{world['cara']}", "act-0-value": "",
        "act-1-type": f"send_saved_reply:{reply_id}", "act-1-value": ""}))
    assert r.status_code == 302


def test_a_deleted_saved_reply_is_shown_and_noted_not_fatal(host, client, admin,
                                                           world):  # noqa: F811
    with host.app.app_context():
        m = host.inbox.models
        reply = m.SavedReply(title="Gone soon", body="Hi")
        host.db.session.add(reply)
        host.db.session.commit()
        reply_id = reply.id
    add_rule(host, "answer", [], [{"type": "send_saved_reply", "saved_reply_id": reply_id},
                                  {"type": "add_tag", "tag": "answered"}])
    client.post(f"/support/settings/saved-replies/{reply_id}/delete", data={"csrf_token": admin})
    page = client.get("/support/settings/rules/").get_data(as_text=True)
    assert "send a saved reply that was deleted" in page
    t = receive(host, world["support"], raw_mail("Q", msgid="gone1"))
    assert tags_of(host, t) == ["answered"]
    assert rule_runs(host, t) == ["rule answer matched: could not send saved reply: the saved "
                                  "reply no longer exists for this mailbox, tagged answered"]


def test_without_the_regex_package_risky_patterns_are_refused(host, monkeypatch):
    from shared_inbox.services import rules

    monkeypatch.setattr(rules, "_regex", None)
    rules._compiled.cache_clear()
    try:
        with host.app.app_context():
            for risky in (r"^(a+)+$", r"(x|xx)*y", r"(\w+\s?)*$"):
                with pytest.raises(rules.RuleError, match="Nested repetition"):
                    rules.check_pattern(risky)
            rules.check_pattern(r"order\s*#?\d+")
            # Only the start of a long text is searched with plain re.
            text = "x" * rules.PLAIN_RE_TEXT_LIMIT + "needle"
            assert rules.pattern_search("needle", text) is False
            assert rules.pattern_search("needle", "a needle") is True
    finally:
        rules._compiled.cache_clear()


def test_admins_mark_members_away_for_round_robin(host, client, admin, world):  # noqa: F811
    with host.app.app_context():
        m = host.inbox.models
        ada_membership = host.db.session.scalar(sa.select(m.MailboxMember.id).where(
            m.MailboxMember.user_id == world["ada"]))
    add_rule(host, "share", [], [{"type": "assign_round_robin"}])
    r = client.post(f"/support/settings/rules/availability/{ada_membership}",
                    data={"csrf_token": admin, "available": "0"})
    assert r.status_code == 302
    page = client.get("/support/settings/rules/").get_data(as_text=True)
    assert "Ada: away" in page and "Ben: available" in page
    assignees = []
    for i in range(2):
        t = receive(host, world["support"], raw_mail(f"Q{i}", msgid=f"aw{i}"))
        with host.app.app_context():
            assignees.append(host.db.session.get(host.inbox.models.Ticket, t).assignee_id)
    assert assignees == [world["ben"], world["ben"]]
    client.post(f"/support/settings/rules/availability/{ada_membership}",
                data={"csrf_token": admin, "available": "1"})
    assert "Ada: available" in client.get("/support/settings/rules/").get_data(as_text=True)
    assert client.post("/support/settings/rules/availability/99999",
                       data={"csrf_token": admin, "available": "1"}).status_code == 404
