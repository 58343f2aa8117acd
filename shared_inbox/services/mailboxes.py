"""Mailboxes for settings pages, and membership: which agents may see which mailbox."""
from __future__ import annotations

import sqlalchemy as sa

from ..access import user_id
from ..extension import get_state


def all_mailboxes() -> list:
    """Every mailbox by name (the choices of settings forms; admins only)."""
    m = get_state().models
    return list(get_state().db.session.scalars(sa.select(m.Mailbox).order_by(m.Mailbox.name)))


def add_member(mailbox, user) -> bool:
    """Returns False when the user already was a member."""
    state = get_state()
    m = state.models
    uid = user_id(user)
    exists = state.db.session.scalar(sa.select(m.MailboxMember.id).where(
        m.MailboxMember.mailbox_id == mailbox.id, m.MailboxMember.user_id == uid))
    if exists:
        return False
    state.db.session.add(m.MailboxMember(mailbox_id=mailbox.id, user_id=uid))
    return True


def remove_member(mailbox, user) -> bool:
    state = get_state()
    m = state.models
    result = state.db.session.execute(sa.delete(m.MailboxMember).where(
        m.MailboxMember.mailbox_id == mailbox.id, m.MailboxMember.user_id == user_id(user)))
    return result.rowcount > 0
