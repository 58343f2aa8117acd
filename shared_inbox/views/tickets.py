"""A ticket's page, its actions, and downloads of attachments and original messages."""
from __future__ import annotations

import io
import re

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user

from ..access import can_see_mailbox, get_ticket_or_404
from ..extension import get_state
from ..models import STATUSES
from ..services.tickets import SplitError, change_status, split_message

#: Raster images only: an SVG (or anything else) is never rendered on our origin.
INLINE_SAFE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}

CID_SRC = re.compile(r'src="cid:([^"]*)"')


def html_for_display(message, endpoint: str) -> str | None:
    """Stored (already sanitized) HTML with ``cid:`` images pointed at our download view."""
    if not message.body_html:
        return None
    by_cid = {a.content_id: a for a in message.attachments if a.content_id}

    def _swap(match):
        att = by_cid.get(match.group(1))
        if att is None or att.content_type not in INLINE_SAFE_TYPES:
            return 'src=""'
        return f'src="{url_for(endpoint, attachment_id=att.id, inline=1)}"'

    return CID_SRC.sub(_swap, message.body_html)


def register(bp):
    @bp.route("/tickets/<int:ticket_id>")
    def ticket(ticket_id):
        state = get_state()
        m = state.models
        t = get_ticket_or_404(ticket_id)
        messages = list(state.db.session.scalars(
            sa.select(m.Message).where(m.Message.ticket_id == t.id)
            .options(sa.orm.selectinload(m.Message.attachments),
                     sa.orm.selectinload(m.Message.author))
            .order_by(m.Message.created_at, m.Message.id)
        ))
        activity = list(state.db.session.scalars(
            sa.select(m.Activity).where(m.Activity.ticket_id == t.id)
            .order_by(m.Activity.created_at.desc(), m.Activity.id.desc()).limit(50)
        ))
        endpoint = f"{bp.name}.attachment"
        html = {msg.id: html_for_display(msg, endpoint) for msg in messages}
        return render_template(
            "shared_inbox/ticket.html", ticket=t, messages=messages, html=html,
            activity=activity, statuses=STATUSES,
        )

    @bp.route("/tickets/<int:ticket_id>/status", methods=["POST"])
    def set_status(ticket_id):
        state = get_state()
        t = get_ticket_or_404(ticket_id)
        status = request.form.get("status", "")
        if status not in STATUSES:
            abort(400, description=f"unknown status {status!r}")
        if change_status(t, status, actor=current_user._get_current_object()):
            state.db.session.commit()
            flash(f"Ticket #{t.number} is now {status}.", "success")
        return redirect(url_for(f"{bp.name}.ticket", ticket_id=t.id))

    @bp.route("/messages/<int:message_id>/split", methods=["POST"])
    def split(message_id):
        state = get_state()
        msg = state.db.session.get(state.models.Message, message_id)
        if msg is None or not can_see_mailbox(msg.ticket.mailbox_id):
            abort(404)
        old_id = msg.ticket_id
        try:
            new = split_message(msg, actor=current_user._get_current_object())
        except SplitError as exc:
            flash(str(exc), "error")
            return redirect(url_for(f"{bp.name}.ticket", ticket_id=old_id))
        state.db.session.commit()
        flash(f"The message now has its own ticket, #{new.number} (split from #{old_id}).", "success")
        return redirect(url_for(f"{bp.name}.ticket", ticket_id=new.id))

    @bp.route("/attachments/<int:attachment_id>")
    def attachment(attachment_id):
        state = get_state()
        att = state.db.session.get(state.models.Attachment, attachment_id)
        if att is None or not can_see_mailbox(att.message.ticket.mailbox_id):
            abort(404)
        inline = request.args.get("inline") == "1" and att.content_type in INLINE_SAFE_TYPES
        response = send_file(
            io.BytesIO(state.storage.get(att.storage_key)),
            mimetype=att.content_type if inline else _download_type(att.content_type),
            as_attachment=not inline, download_name=att.filename,
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    @bp.route("/messages/<int:message_id>/original")
    def original(message_id):
        state = get_state()
        msg = state.db.session.get(state.models.Message, message_id)
        if msg is None or not can_see_mailbox(msg.ticket.mailbox_id) or not msg.raw_key:
            abort(404)
        response = send_file(
            io.BytesIO(state.storage.get(msg.raw_key)), mimetype="message/rfc822",
            as_attachment=True, download_name=f"message-{msg.id}.eml",
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _download_type(content_type: str) -> str:
    """Types a browser would render are downloaded as opaque bytes."""
    if content_type.startswith("text/") or "html" in content_type or "svg" in content_type \
            or "xml" in content_type or "javascript" in content_type:
        return "application/octet-stream"
    return content_type or "application/octet-stream"
