"""Which ticket an incoming message belongs to, and why.

(Named ``threader`` rather than the design card's ``threading`` so it can never shadow the
standard library module.)

Order: the message's In-Reply-To and References against every Message-ID we stored,
inbound and the ones we sent; then a ``[#123]`` token in the subject, accepted only from
that ticket's own customer (another customer quoting a ticket number must not join it);
otherwise a new ticket.
"""
from __future__ import annotations

import re

import sqlalchemy as sa

from ..extension import get_state

TICKET_TOKEN = re.compile(r"\[#(\d{1,12})\]")


def find_ticket(parsed, customer):
    """Return ``(ticket, reason)`` or ``(None, "")`` for a new ticket."""
    state = get_state()
    m = state.models
    session = state.db.session
    # Most specific first: In-Reply-To, then References from the newest to the oldest.
    candidates: list[tuple[str, str]] = [(mid, "In-Reply-To") for mid in parsed.in_reply_to]
    candidates += [(mid, "References") for mid in reversed(parsed.references)]
    own_id = parsed.message_id
    candidates = [(mid, how) for mid, how in candidates if mid and mid != own_id]
    if candidates:
        ids = list(dict.fromkeys(mid[:998] for mid, _ in candidates))
        rows = session.execute(
            sa.select(m.Message.message_id, m.Message.ticket_id)
            .where(m.Message.message_id.in_(ids))
            .order_by(m.Message.id.desc())
        ).all()
        by_id: dict[str, int] = {}
        for mid, ticket_id in rows:
            by_id.setdefault(mid, ticket_id)
        for mid, how in candidates:
            if mid in by_id:
                return session.get(m.Ticket, by_id[mid]), f"matched {how} <{mid}>"
    match = TICKET_TOKEN.search(parsed.subject or "")
    if match and customer is not None:
        ticket = session.get(m.Ticket, int(match.group(1)))
        if ticket is not None and ticket.customer_id == customer.id:
            return ticket, f"subject token [#{ticket.id}] from the ticket's customer"
    return None, ""
