"""Customer context: host providers beside a ticket, failing and slow ones "unavailable",
cached results, values for rules, and the example shop's orders."""
import logging
import threading

import pytest
import sqlalchemy as sa

from test_ticket_actions import as_user, make_mailbox, make_ticket


@pytest.fixture
def world(host):
    support = make_mailbox(host, "support@x.test")
    boss = host.add_user("boss@x.test", role="admin", name="Boss")
    ticket = make_ticket(host, support, "Where is my tent?", customer_email="jo@example.org",
                         customer_name="Jo Doe")
    return dict(support=support, boss=boss, ticket=ticket)


@pytest.fixture
def templates(host):
    """The host's own panel template, as a real site would ship it in its templates folder."""
    from jinja2 import DictLoader

    host.app.jinja_loader = DictLoader({
        "crm.html": "<p class='crm'>Plan {{ plan }} for {{ customer.email }}</p>",
    })
    return host


def ticket_page(host, client, world):
    as_user(host, client, world["boss"])
    r = client.get(f"/support/tickets/{world['ticket']}")
    assert r.status_code == 200
    return r.get_data(as_text=True)


def values_for(host, email="jo@example.org"):
    from shared_inbox.services.context import context_values

    with host.app.app_context():
        m = host.inbox.models
        customer = host.db.session.scalar(sa.select(m.Customer).where(m.Customer.email == email))
        return context_values(customer)


def test_provider_panel_is_rendered_beside_the_ticket_escaped(host, client, world, templates):
    seen = []

    @host.inbox.customer_context
    def crm(customer):
        seen.append((customer.email, customer.name))
        return {"title": "CRM", "template": "crm.html", "data": {"plan": "<b>Gold</b>"},
                "values": {"plan": "gold", "vip": True}}

    page = ticket_page(host, client, world)
    assert "<h2>CRM</h2>" in page
    assert "Plan &lt;b&gt;Gold&lt;/b&gt; for jo@example.org" in page  # escaped, not markup
    assert seen == [("jo@example.org", "Jo Doe")]
    assert values_for(host) == {"plan": "gold", "vip": True}


def test_several_providers_and_one_with_nothing_to_show(host, client, world, templates):
    @host.inbox.customer_context
    def nothing(customer):
        return None

    @host.inbox.customer_context
    def crm(customer):
        return {"title": "CRM", "template": "crm.html", "data": {"plan": "basic"}}

    page = ticket_page(host, client, world)
    assert "Plan basic" in page
    assert "unavailable" not in page
    assert values_for(host) == {}


def test_failing_provider_shows_unavailable_and_is_logged(host, client, world, templates,
                                                         caplog):
    @host.inbox.customer_context
    def billing(customer):
        raise ConnectionError("billing API down")

    @host.inbox.customer_context
    def crm(customer):
        return {"title": "CRM", "template": "crm.html", "data": {"plan": "gold"},
                "values": {"plan": "gold"}}

    with caplog.at_level(logging.ERROR, logger="shared_inbox.context"):
        page = ticket_page(host, client, world)
    assert "billing unavailable right now." in page
    assert "Plan gold" in page  # the working provider still shows
    assert "Where is my tent?" in page  # the ticket itself is there
    assert any("billing" in r.getMessage() and r.exc_info
               and "billing API down" in str(r.exc_info[1]) for r in caplog.records)
    assert values_for(host) == {"plan": "gold"}


def test_broken_panel_template_shows_unavailable(host, client, world):
    @host.inbox.customer_context
    def crm(customer):
        return {"title": "CRM", "template": "missing/template.html", "data": {}}

    page = ticket_page(host, client, world)
    assert "CRM unavailable right now." in page


def test_slow_provider_shows_unavailable_after_the_timeout(make_host, caplog):
    host = make_host(config={"SHARED_INBOX_CUSTOMER_CONTEXT_TIMEOUT": 0.2})
    host.create_tables()
    release = threading.Event()
    world = {"ticket": make_ticket(host, make_mailbox(host, "support@x.test")),
             "boss": host.add_user("boss@x.test", role="admin")}

    @host.inbox.customer_context
    def warehouse(customer):
        release.wait(10)
        return {"title": "Warehouse", "template": "never.html", "values": {"slow": 1}}

    try:
        with caplog.at_level(logging.WARNING, logger="shared_inbox.context"):
            page = ticket_page(host, host.app.test_client(), world)
        assert "warehouse unavailable right now." in page
        assert any("warehouse" in r.getMessage() and "longer than 0.2s" in r.getMessage()
                   for r in caplog.records)
        assert values_for(host, "alice@example.org") == {}
    finally:
        release.set()


def test_results_are_cached_for_the_configured_time(make_host):
    host = make_host(config={"SHARED_INBOX_CUSTOMER_CONTEXT_CACHE_SECONDS": 300})
    host.create_tables()
    calls = []

    @host.inbox.customer_context
    def crm(customer):
        calls.append(customer.email)
        return {"values": {"n": len(calls)}}

    make_ticket(host, make_mailbox(host, "support@x.test"))
    assert values_for(host, "alice@example.org") == {"n": 1}
    assert values_for(host, "alice@example.org") == {"n": 1}
    assert calls == ["alice@example.org"]
    with host.app.app_context():
        from shared_inbox.services.context import clear_cache

        clear_cache()
    assert values_for(host, "alice@example.org") == {"n": 2}


def test_cache_can_be_turned_off(make_host):
    host = make_host(config={"SHARED_INBOX_CUSTOMER_CONTEXT_CACHE_SECONDS": 0})
    host.create_tables()
    calls = []

    @host.inbox.customer_context
    def crm(customer):
        calls.append(1)
        return {"values": {"n": len(calls)}}

    make_ticket(host, make_mailbox(host, "support@x.test"))
    assert values_for(host, "alice@example.org") == {"n": 1}
    assert values_for(host, "alice@example.org") == {"n": 2}


def test_a_provider_returning_garbage_gives_empty_values(host, world):
    @host.inbox.customer_context
    def bad(customer):
        return ["not", "a", "dict"]

    assert values_for(host) == {}


def test_without_providers_the_sidebar_has_no_panel(host, client, world):
    page = ticket_page(host, client, world)
    assert "si-context" not in page


# --- the example shop -----------------------------------------------------------------------

@pytest.fixture
def shop(tmp_path):
    from examples.shop import create_app, inbox
    from examples.shop.models import db
    from examples.shop.seed import seed_accounts_and_orders

    app = create_app({
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'shop.db'}",
        "SHARED_INBOX_ATTACHMENT_DIR": str(tmp_path / "files"),
    })
    with app.app_context():
        seed_accounts_and_orders()
        inbox.create_all()
        m = inbox.models
        mailbox = m.Mailbox(name="Support", email_address="support@acme.test")
        customer = m.Customer(email="jose@example.org", name="José")
        ticket = m.Ticket(mailbox=mailbox, customer=customer, subject="Tent pole broke")
        db.session.add(ticket)
        db.session.commit()
        ticket_id = ticket.id
    yield app, ticket_id
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def shop_login(client, app, email):
    from examples.shop.models import User, db

    with app.app_context():
        uid = db.session.scalar(sa.select(User.id).where(User.email == email))
    with client.session_transaction() as sess:
        sess["_user_id"] = str(uid)
        sess["_fresh"] = True


def test_shop_shows_the_customers_orders_beside_the_ticket(shop):
    app, ticket_id = shop
    client = app.test_client()
    shop_login(client, app, "admin@acme.test")
    page = client.get(f"/support/tickets/{ticket_id}").get_data(as_text=True)
    # jose@example.org has orders 1001, 1006, 1011, 1016 in the seed (newest first).
    assert "<h2>Orders</h2>" in page
    assert "4 orders, €1,494.00 spent" in page  # the refunded order does not count
    for number in (1001, 1006, 1011, 1016):
        assert f'href="/admin/orders/{number}">#{number}</a>' in page
    assert page.index("#1016") < page.index("#1001")
    assert "2026-10-11" in page  # order 1006's date
    assert "3 × Trailhead 2P tent" in page and "€747.00" in page  # order 1006
    for status in ("paid", "shipped", "delivered", "refunded"):
        assert f'<span class="si-badge">{status}</span>' in page
    # The link leads into the shop's admin, which agents may open and customers may not.
    assert client.get("/admin/orders/1006").status_code == 200
    other = app.test_client()
    shop_login(other, app, "carol@acme.test")
    assert other.get("/admin/orders/1006").status_code == 403


def test_shop_exposes_order_values_for_rules(shop):
    app, ticket_id = shop
    from examples.shop import inbox
    from shared_inbox.services.context import context_values

    from examples.shop.models import db

    with app.app_context():
        ticket = db.session.get(inbox.models.Ticket, ticket_id)
        values = context_values(ticket.customer)
    assert values == {"orders.count": 4, "orders.total": 1494.0, "vip": True}
