"""Settings (admins only): mailboxes and who may see them."""
from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for

from ..access import require_admin, user_id
from ..extension import get_state
from ..services.mailboxes import add_member, remove_member


def _agents():
    state = get_state()
    ext = state.extension
    users = state.db.session.scalars(sa.select(state.user_model))
    return [u for u in users if ext.is_agent(u) and not ext.is_admin(u)]


def register(bp):
    @bp.route("/settings/")
    def settings():
        require_admin()
        state = get_state()
        m = state.models
        mailboxes = list(state.db.session.scalars(sa.select(m.Mailbox).order_by(m.Mailbox.name)))
        return render_template(
            "shared_inbox/settings.html", mailboxes=mailboxes, agents=_agents(), user_id=user_id,
        )

    @bp.route("/settings/mailboxes/<int:mailbox_id>/members", methods=["POST"])
    def mailbox_members(mailbox_id):
        require_admin()
        state = get_state()
        mailbox = state.db.session.get(state.models.Mailbox, mailbox_id)
        if mailbox is None:
            abort(404)
        by_id = {str(user_id(u)): u for u in _agents()}
        user = by_id.get(request.form.get("user_id", ""))
        if user is None:
            flash("Choose an agent.", "error")
            return redirect(url_for(f"{bp.name}.settings"))
        name = state.extension.display_user(user)["name"]
        if request.form.get("action") == "remove":
            remove_member(mailbox, user)
            flash(f"{name} no longer sees {mailbox.name}.", "success")
        else:
            add_member(mailbox, user)
            flash(f"{name} now sees {mailbox.name}.", "success")
        state.db.session.commit()
        return redirect(url_for(f"{bp.name}.settings"))
