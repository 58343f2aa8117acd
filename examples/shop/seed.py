"""Demo data: staff accounts, customers' orders, and who sees which mailbox."""
from datetime import datetime, timedelta

import click
import sqlalchemy as sa

from .models import Order, User, db

ACCOUNTS = [
    # email, name, password, staff, admin
    ("admin@acme.test", "Grace Admin", "admin-demo", True, True),
    ("ada@acme.test", "Ada Agent", "ada-demo", True, False),
    ("ben@acme.test", "Ben Agent", "ben-demo", True, False),
    ("carol@acme.test", "Carol Customer", "carol-demo", False, False),
]
# Which demo mailboxes each agent works in (admins see all).
MEMBERSHIPS = {"ada@acme.test": ["support", "sales"], "ben@acme.test": ["support", "billing"]}

CUSTOMERS = ["jose@example.org", "zoe@example.org", "alice@example.org", "taro@example.jp",
             "bob@example.org"]  # so the demo mails name their own orders (#1003, #1005, #1012)
PRODUCTS = [("Trailhead 2P tent", 24900), ("Ember stove", 5900), ("Ridge 45L backpack", 13900),
            ("Down sleeping bag", 18900), ("Titanium mug", 2900)]


def create_tables() -> None:
    """Only the shop's tables; the inbox manages its own (`flask inbox init-db`)."""
    db.metadata.create_all(db.engine, tables=[User.__table__, Order.__table__])


def seed_accounts_and_orders() -> None:
    create_tables()
    if db.session.scalar(sa.select(sa.func.count(User.id))):
        return
    for email, name, password, staff, admin in ACCOUNTS:
        user = User(email=email, name=name, is_staff=staff, is_admin=admin)
        user.set_password(password)
        db.session.add(user)
    base = datetime(2026, 10, 1, 9, 30)
    for i in range(20):
        product, price = PRODUCTS[i % len(PRODUCTS)]
        qty = 1 + i % 3
        db.session.add(Order(
            number=1001 + i, email=CUSTOMERS[i % len(CUSTOMERS)],
            placed_at=base + timedelta(days=i * 2, hours=i), total_cents=price * qty,
            status=["paid", "shipped", "delivered", "refunded"][i % 4],
            items=[{"product": product, "qty": qty, "price_cents": price}],
        ))
    db.session.commit()


def seed_memberships(mailboxes: dict) -> None:
    from shared_inbox.services.mailboxes import add_member

    for email, names in MEMBERSHIPS.items():
        user = db.session.scalar(sa.select(User).where(User.email == email))
        for name in names:
            if user is not None and name in mailboxes:
                add_member(mailboxes[name], user)
    db.session.commit()


def print_accounts() -> None:
    click.echo("\n  Demo accounts (email / password):")
    for email, name, password, staff, admin in ACCOUNTS:
        role = "admin" if admin else "agent" if staff else "customer, not an agent"
        where = f" — sees {', '.join(MEMBERSHIPS[email])}" if email in MEMBERSHIPS else ""
        click.echo(f"    {email:<18} {password:<12} {role}{where}")


def seed_automation(mailboxes: dict) -> None:
    """Once: an SLA policy and a rule on the shop's own customer data, so the demo's inbox
    shows due times and a tag the orders decided (both editable under Settings)."""
    from shared_inbox.extension import get_state
    from shared_inbox.services.rules import next_position

    m = get_state().models
    if db.session.scalar(sa.select(sa.func.count(m.SlaPolicy.id))) or db.session.scalar(
            sa.select(sa.func.count(m.Rule.id))):
        return  # the demo ran before: keep what the admin configured since
    db.session.add(m.SlaPolicy(name="Standard", position=1, first_response_minutes=4 * 60,
                               resolution_minutes=3 * 24 * 60))
    db.session.add(m.Rule(
        name="Repeat customers", position=next_position(), trigger="new", match="all",
        is_active=True,
        conditions=[{"field": "customer", "key": "orders.count", "op": "greater", "value": "2"}],
        actions=[{"type": "add_tag", "tag": "repeat customer"}]))
    db.session.commit()

