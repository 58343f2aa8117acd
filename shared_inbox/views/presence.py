"""The ticket page's heartbeat: who else is here, and what arrived since the page opened.

``static/shared_inbox/presence.js`` posts here every ``PRESENCE_INTERVAL`` seconds (CSRF
token in the ``X-CSRFToken`` header, checked by the blueprint) and when the agent starts
typing a reply; the answer updates the page in place. Like the ticket page itself, a ticket
in a mailbox the agent may not see answers 404.
"""
from __future__ import annotations

from flask import jsonify, request
from flask_login import current_user

from ..access import get_ticket_or_404
from ..config import cv
from ..extension import get_state
from ..services import presence


def new_messages_notice(messages) -> str:
    """The sentence shown above the reply box, or "" when nothing new arrived."""
    if not messages:
        return ""
    who = ", ".join(sorted({msg.from_name or msg.from_email or "an agent" for msg in messages}))
    count = len(messages)
    noun = "message" if count == 1 else "messages"
    return f"{count} new {noun} arrived since you opened this page (from {who})."


def register(bp):
    @bp.route("/tickets/<int:ticket_id>/presence", methods=["POST"])
    def ticket_presence(ticket_id):
        state = get_state()
        ticket = get_ticket_or_404(ticket_id)
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            data = request.form
        me = current_user._get_current_object()
        presence.heartbeat(ticket, me, str(data.get("state", "viewing")))
        state.db.session.commit()
        newer = presence.newer_messages(ticket, data.get("seen_message_id"))
        response = jsonify({
            "others": presence.others(ticket, me),
            "new_messages": len(newer),
            "notice": new_messages_notice(newer),
            "interval": cv("PRESENCE_INTERVAL"),
        })
        response.headers["Cache-Control"] = "no-store"
        return response
