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
    ticket_id, reason = find_ticket_id(parsed, customer.id if customer is not None else None)
    if ticket_id is None:
        return None, ""
    state = get_state()
    return state.db.session.get(state.models.Ticket, ticket_id), reason


def thread_candidates(parsed) -> list[tuple[str, str]]:
    """``[(message id, header)]`` to look up, most specific first: In-Reply-To, then
    References from the newest to the oldest (never the mail's own id)."""
    candidates = [(mid, "In-Reply-To") for mid in parsed.in_reply_to]
    candidates += [(mid, "References") for mid in reversed(parsed.references)]
    own_id = parsed.message_id
    return [(mid, how) for mid, how in candidates if mid and mid != own_id]


def matched(how: str, message_id: str) -> str:
    """Why a mail joined a ticket through one of its thread headers (shown on hover)."""
    return f"matched {how} <{message_id}>"


def ticket_by_token(subject: str, customer_id: int | None) -> tuple[int | None, str]:
    """The ticket a ``[#123]`` token in the subject names, if it is that customer's."""
    match = TICKET_TOKEN.search(subject or "")
    number = int(match.group(1)) if match else 0
    if 0 < number < 2**31 and customer_id is not None:  # (an INTEGER key on PostgreSQL)
        state = get_state()
        m = state.models
        owner = state.db.session.scalar(sa.select(m.Ticket.customer_id)
                                        .where(m.Ticket.id == number))
        if owner is not None and owner == customer_id:
            return number, f"subject token [#{number}] from the ticket's customer"
    return None, ""


def find_ticket_id(parsed, customer_id: int | None) -> tuple[int | None, str]:
    """:func:`find_ticket` without loading the ticket."""
    state = get_state()
    m = state.models
    session = state.db.session
    candidates = thread_candidates(parsed)
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
                return by_id[mid], matched(how, mid)
    return ticket_by_token(parsed.subject, customer_id)
