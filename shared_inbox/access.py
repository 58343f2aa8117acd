"""Who may see what: agents see the mailboxes they are members of, admins see all.

Every view goes through these helpers, so there is one place per rule. A ticket, message
or attachment in a mailbox the agent may not see answers 404, not 403, so identifiers
guessed across mailboxes leak nothing (not even that they exist).
"""
from __future__ import annotations

import sqlalchemy as sa
from flask import abort, current_app
from flask_login import current_user

from .extension import get_state


def login_required_for_inbox():
    """Anonymous users go to the host's login view; non-agents get 403."""
    state = get_state()
    if not current_user.is_authenticated:
        login_manager = getattr(current_app, "login_manager", None)
        if login_manager is None:
            raise RuntimeError("shared_inbox needs the host app to use Flask-Login")
        return login_manager.unauthorized()
    if not state.extension.is_agent(current_user._get_current_object()):
        abort(403)
    return None


def is_admin(user=None) -> bool:
    user = user if user is not None else current_user._get_current_object()
    return get_state().extension.is_admin(user)


def require_admin() -> None:
    if not is_admin():
        abort(403)


def user_id(user) -> object:
    """The host user's primary-key value (typed, not the string Flask-Login uses)."""
    from .models import user_primary_key

    state = get_state()
    return getattr(user, user_primary_key(state.user_model).key)


def visible_mailbox_ids(user=None) -> set[int] | None:
    """Ids of the mailboxes the user may see; None means all (admins)."""
    user = user if user is not None else current_user._get_current_object()
    state = get_state()
    if state.extension.is_admin(user):
        return None
    m = state.models
    rows = state.db.session.execute(
        sa.select(m.MailboxMember.mailbox_id).where(m.MailboxMember.user_id == user_id(user))
    )
    return {r[0] for r in rows}


def mailbox_filter(column, user=None):
    """A WHERE clause restricting ``column`` (a mailbox id column) to what the user may see."""
    ids = visible_mailbox_ids(user)
    if ids is None:
        return sa.true()
    return column.in_(ids) if ids else sa.false()


def visible_mailboxes(user=None) -> list:
    state = get_state()
    m = state.models
    return list(
        state.db.session.scalars(
            sa.select(m.Mailbox).where(mailbox_filter(m.Mailbox.id, user)).order_by(m.Mailbox.name)
        )
    )


def get_or_404(model_name: str, pk):
    """A row of one of our models by primary key (``get_or_404("Rule", 3)``), else 404 (the
    same answer as for any id that does not exist). For settings objects, which only admins
    reach; tickets and what hangs off them go through :func:`get_ticket_or_404`."""
    state = get_state()
    return state.db.get_or_404(getattr(state.models, model_name), pk)


def get_ticket_or_404(ticket_id: int):
    state = get_state()
    ticket = state.db.session.get(state.models.Ticket, ticket_id)
    if ticket is None or not can_see_mailbox(ticket.mailbox_id):
        abort(404)
    return ticket


def can_see_mailbox(mailbox_id: int, user=None) -> bool:
    ids = visible_mailbox_ids(user)
    return ids is None or mailbox_id in ids
