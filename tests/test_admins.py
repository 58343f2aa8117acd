"""The assignee list and admin mail come from members and admins, not from every host user.

A shop whose customers also have accounts may have a huge user table; the ticket page must
offer exactly the people who may take the ticket, and a new admin must show up at once.
"""
from __future__ import annotations

import re

import sqlalchemy as sa


def _assignee_names(client, ticket_id) -> list[str]:
    page = client.get(f"/support/tickets/{ticket_id}").get_data(as_text=True)
    select = re.search(r'<select[^>]*name="assignee_id".*?</select>', page, re.S).group(0)
    return [name.strip() for name in re.findall(r"<option[^>]*>([^<]*)</option>", select)
            if name.strip() != "Unassigned"]


def test_assignees_are_members_and_admins_only(host):
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.add_all(host.User(email=f"shopper{n}@x.test", role="customer",
                                          name=f"Shopper {n}") for n in range(300))
        support = m.Mailbox(name="Support", email_address="support@x.test")
        billing = m.Mailbox(name="Billing", email_address="billing@x.test")
        ticket = m.Ticket(mailbox=support, customer=m.Customer(email="c@x.test"), subject="Hi")
        host.db.session.add_all([support, billing, ticket])
        host.db.session.commit()
        ids = {"support": support.id, "billing": billing.id, "ticket": ticket.id}
    ada = host.add_user("ada@x.test", name="Ada")
    ben = host.add_user("ben@x.test", name="Ben")  # an agent of billing only
    host.add_user("boss@x.test", role="admin", name="Boss")
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.add_all([m.MailboxMember(mailbox_id=ids["support"], user_id=ada),
                                 m.MailboxMember(mailbox_id=ids["billing"], user_id=ben)])
        host.db.session.commit()
    client = host.app.test_client()
    host.login(client, ada)
    assert _assignee_names(client, ids["ticket"]) == ["Ada", "Boss"]

    # A second admin appears at once (no waiting for a cache to expire), admin mail too.
    host.add_user("grace@x.test", role="admin", name="Grace")
    assert _assignee_names(client, ids["ticket"]) == ["Ada", "Boss", "Grace"]
    with host.app.app_context():
        from shared_inbox.services.notify import admin_recipients

        assert sorted(a for _, a in admin_recipients()) == ["boss@x.test", "grace@x.test"]
        # The scan leaves no shopper behind in the session.
        loaded = [o for o in host.db.session.identity_map.values()
                  if isinstance(o, host.User) and o.role == "customer"]
        assert loaded == []


def test_a_demoted_admin_is_not_offered(host):
    with host.app.app_context():
        m = host.inbox.models
        support = m.Mailbox(name="Support", email_address="support@x.test")
        ticket = m.Ticket(mailbox=support, customer=m.Customer(email="c@x.test"), subject="Hi")
        host.db.session.add_all([support, ticket])
        host.db.session.commit()
        ticket_id = ticket.id
    boss = host.add_user("boss@x.test", role="admin", name="Boss")
    grace = host.add_user("grace@x.test", role="admin", name="Grace")
    client = host.app.test_client()
    host.login(client, boss)
    assert _assignee_names(client, ticket_id) == ["Boss", "Grace"]
    with host.app.app_context():
        host.db.session.execute(sa.update(host.User).where(host.User.id == grace)
                                .values(role="agent"))
        host.db.session.commit()
    # Grace is no longer an admin nor a member of Support: gone from the list straight away.
    assert _assignee_names(client, ticket_id) == ["Boss"]


def _member_choices(client) -> list[str]:
    page = client.get("/support/settings/").get_data(as_text=True)
    select = re.search(r'<select name="user_id".*?</select>', page, re.S).group(0)
    return re.findall(r"<option[^>]*>([^<]*)</option>", select)


def test_member_and_rule_choices_offer_agents_without_loading_every_user(host):
    """The mailbox members form and the rule actions list the agents; the shop's
    customers, who have accounts too, are neither offered nor kept in the session."""
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.add_all(host.User(email=f"shopper{n}@x.test", role="customer",
                                          name=f"Shopper {n}") for n in range(300))
        host.db.session.add(m.Mailbox(name="Support", email_address="support@x.test"))
        host.db.session.commit()
    host.add_user("zoe@x.test", name="Zoe")
    host.add_user("ada@x.test", name="Ada")
    boss = host.add_user("boss@x.test", role="admin", name="Boss")
    client = host.app.test_client()
    host.login(client, boss)
    # Admins see every mailbox: only agents can be made members.
    assert _member_choices(client) == ["Ada", "Zoe"]
    # A new agent account shows up at once.
    host.add_user("ben@x.test", name="Ben")
    assert _member_choices(client) == ["Ada", "Ben", "Zoe"]
    with host.app.test_request_context():
        from shared_inbox.services.rules import action_choices

        labels = [label for _choice, label in action_choices()]
        assert [x for x in labels if x.startswith("Assign to")] == [
            "Assign to Ada", "Assign to Ben", "Assign to Boss", "Assign to Zoe"]
        loaded = [o for o in host.db.session.identity_map.values()
                  if isinstance(o, host.User) and o.role == "customer"]
        assert loaded == []
