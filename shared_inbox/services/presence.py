"""Collision safety: who else has a ticket open, and whether they are writing a reply.

Each open ticket page sends a heartbeat every ``PRESENCE_INTERVAL`` seconds (and at once
when the agent starts typing a reply); :func:`heartbeat` upserts one row per (ticket,
agent). Rows older than ``PRESENCE_TIMEOUT`` are ignored; rows older than
:data:`KEEP_FOR` are deleted — this ticket's on every heartbeat (through the unique index),
everybody's at most once a minute per process (through the ``last_seen`` index).
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..access import user_id
from ..config import cv
from ..extension import get_state
from ..models import utcnow

STATES = ("viewing", "replying")

#: Rows not refreshed for this long are deleted.
KEEP_FOR = timedelta(minutes=5)
SWEEP_EVERY = 60.0  # seconds between two global clean-ups in one process

_sweep_lock = threading.Lock()
_last_sweep = 0.0


def heartbeat(ticket, user, state: str = "viewing", *, now: datetime | None = None) -> None:
    """Record that ``user`` has ``ticket`` open (``state``: viewing or replying). No commit."""
    if state not in STATES:
        state = "viewing"
    now = now or utcnow()
    app_state = get_state()
    m = app_state.models
    session = app_state.db.session
    uid = user_id(user)
    table = m.Presence.__table__
    dialect = session.get_bind().dialect.name
    values = {"ticket_id": ticket.id, "user_id": uid, "state": state, "last_seen": now}
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(table).values(**values)
        session.execute(stmt.on_conflict_do_update(
            index_elements=["ticket_id", "user_id"],
            set_={"state": stmt.excluded.state, "last_seen": stmt.excluded.last_seen}))
    else:  # pragma: no cover - other databases: update, else insert
        done = session.execute(sa.update(table).where(
            table.c.ticket_id == ticket.id, table.c.user_id == uid
        ).values(state=state, last_seen=now)).rowcount
        if not done:
            session.execute(sa.insert(table).values(**values))
    session.execute(sa.delete(table).where(
        table.c.ticket_id == ticket.id, table.c.last_seen < now - KEEP_FOR))
    _maybe_sweep(now)


def _maybe_sweep(now: datetime) -> None:
    global _last_sweep
    tick = time.monotonic()
    with _sweep_lock:
        if tick - _last_sweep < SWEEP_EVERY:
            return
        _last_sweep = tick
    sweep(now)


def sweep(now: datetime | None = None) -> int:
    """Delete every presence row older than :data:`KEEP_FOR`; returns how many. No commit."""
    now = now or utcnow()
    app_state = get_state()
    table = app_state.models.Presence.__table__
    return app_state.db.session.execute(
        sa.delete(table).where(table.c.last_seen < now - KEEP_FOR)).rowcount or 0


def others(ticket, user, *, now: datetime | None = None) -> list[dict]:
    """The other agents with a fresh heartbeat on ``ticket``: ``[{"name", "state", "text"}]``,
    those replying first, then by name. Agents who may no longer see the mailbox are left out.
    """
    from .tickets import may_see_mailbox

    now = now or utcnow()
    app_state = get_state()
    m = app_state.models
    fresh_since = now - timedelta(seconds=float(cv("PRESENCE_TIMEOUT")))
    rows = app_state.db.session.execute(
        sa.select(m.Presence.user_id, m.Presence.state).where(
            m.Presence.ticket_id == ticket.id, m.Presence.user_id != user_id(user),
            m.Presence.last_seen >= fresh_since)).all()
    if not rows:
        return []
    users = {user_id(u): u for u in app_state.db.session.scalars(
        sa.select(app_state.user_model).where(
            _user_pk(app_state.user_model).in_([r.user_id for r in rows])))}
    display = app_state.extension.display_user
    found = []
    for row in rows:
        other = users.get(row.user_id)
        if other is None or not may_see_mailbox(other, ticket.mailbox):
            continue
        name = display(other)["name"]
        found.append({"name": name, "state": row.state, "text": f"{name} is {row.state}"})
    found.sort(key=lambda p: (p["state"] != "replying", p["name"].lower()))
    return found


def _user_pk(user_model):
    from ..models import user_primary_key

    return getattr(user_model, user_primary_key(user_model).key)


def newer_messages(ticket, seen_message_id) -> list:
    """Customer messages and replies (not notes) that arrived after the page's newest."""
    from .tickets import has_newer_messages

    return [msg for msg in has_newer_messages(ticket, seen_message_id)
            if msg.kind in ("inbound", "outbound")]
