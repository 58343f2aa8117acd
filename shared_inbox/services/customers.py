"""Customers are found by address. Their name comes from the first mail that gives one;
after that it is the agents' to edit on the profile page (a later mail, whose display name
anyone can set, never overwrites it)."""
from __future__ import annotations

import sqlalchemy as sa

from ..extension import get_state


def customer_email(email: str) -> str:
    """The address a customer is found by (mail without a usable From: one shared one)."""
    return (email or "").strip().lower() or "unknown@invalid"


def get_or_create_customer(email: str, name: str = ""):
    state = get_state()
    m = state.models
    email = customer_email(email)
    customer = state.db.session.scalar(sa.select(m.Customer).where(m.Customer.email == email))
    if customer is None:
        customer = m.Customer(email=email, name=name or "")
        state.db.session.add(customer)
        state.db.session.flush()
    elif name and not customer.name:
        customer.name = name
    return customer
