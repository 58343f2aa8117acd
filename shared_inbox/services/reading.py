"""Per-agent read state: a ticket is unread for an agent when it has a message newer than
their ``InboxTicketRead.read_at`` (or they never opened it)."""
from __future__ import annotations

import sqlalchemy as sa

from ..access import user_id
from ..extension import get_state
from ..models import utcnow


def mark_read(ticket, user, *, commit: bool = True) -> None:
    """Record that ``user`` has read ``ticket`` up to now (upsert; call from the ticket view).

    ``read_at`` is never earlier than the ticket's last message, so a message dated in the
    future (a sender's wrong clock) does not keep the ticket unread forever.
    """
    state = get_state()
    m = state.models
    session = state.db.session
    uid = user_id(user)
    read_at = max(utcnow(), ticket.last_message_at or utcnow())
    table = m.TicketRead.__table__
    dialect = session.get_bind().dialect.name
    values = {"ticket_id": ticket.id, "user_id": uid, "read_at": read_at}
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(table).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["ticket_id", "user_id"], set_={"read_at": stmt.excluded.read_at})
        session.execute(stmt)
    else:
        row = session.scalar(sa.select(m.TicketRead).where(
            m.TicketRead.ticket_id == ticket.id, m.TicketRead.user_id == uid))
        if row is None:
            session.add(m.TicketRead(**values))
        else:
            row.read_at = read_at
    if commit:
        session.commit()


def unread_ticket_ids(tickets, user) -> set[int]:
    """Ids among ``tickets`` that are unread for ``user``: one query for any number."""
    ids = [t.id for t in tickets]
    if not ids:
        return set()
    state = get_state()
    m = state.models
    read = sa.orm.aliased(m.TicketRead)
    rows = state.db.session.execute(
        sa.select(m.Ticket.id)
        .outerjoin(read, sa.and_(read.ticket_id == m.Ticket.id, read.user_id == user_id(user)))
        .where(m.Ticket.id.in_(ids),
               sa.or_(read.id.is_(None), read.read_at < m.Ticket.last_message_at))
    )
    return {r[0] for r in rows}
