"""Replying, internal notes and forwarding from a ticket's page.

Each route checks that the agent may see the ticket (404 otherwise), queues the mail through
:mod:`shared_inbox.services.replies`, commits, and — when sending is enabled — delivers that
one message right away (the outbox row is committed first, so a slow or broken SMTP server
loses nothing: the scheduler retries). When the input is refused (empty text, files too
large...) the ticket page is rendered again with the error and the typed text kept in the
form (status 422), so nothing the agent wrote is lost.
"""
from __future__ import annotations

import re

from flask import abort, current_app, flash, g, make_response, redirect, request, url_for
from flask_login import current_user

from ..access import get_ticket_or_404
from ..extension import get_state
from ..services import outbox
from ..services.replies import ReplyError, Upload, forward, queue_note, queue_reply
from ..services.tickets import has_newer_messages


def _uploads() -> list[Upload]:
    files = []
    for storage in request.files.getlist("attachments"):
        if storage is None or not storage.filename:
            continue
        files.append(Upload(filename=storage.filename,
                            content_type=storage.mimetype or "application/octet-stream",
                            data=storage.read()))
    return files


def _cc() -> list[str]:
    return [a.strip() for a in re.split(r"[,;]", request.form.get("cc", "")) if a.strip()]


def register(bp):
    def ticket_url(ticket_id):
        return url_for(f"{bp.name}.ticket", ticket_id=ticket_id)

    def rerender(ticket_id, form: str, error: str):
        """The ticket page again, with the error and everything typed still in the form."""
        get_state().db.session.rollback()
        g.si_reply_form = form
        g.si_reply_error = error
        g.si_reply_draft = request.form.get("text", "")
        g.si_reply_cc = request.form.get("cc", "")
        g.si_forward_to = request.form.get("to", "")
        view = current_app.view_functions[f"{bp.name}.ticket"]
        return make_response(view(ticket_id=ticket_id), 422)

    def deliver_now(message) -> str | None:
        """Send at once when sending is enabled; returns the error, or None if sent.
        Returns "" when sending is disabled (the outbox will send it)."""
        if not outbox.sending_enabled():
            return ""
        stats = outbox.deliver_due(only_ids=[message.id])
        if stats.sent:
            return None
        return stats.errors.get(message.id, "")

    def send_and_flash(message, sent: str, queued: str) -> None:
        """Send now if sending is on, and tell the agent what became of the message."""
        error = deliver_now(message)
        if error is None:
            flash(f"{sent}.", "success")
        elif error:
            flash(f"{queued}; sending failed ({error}) and will be retried.", "error")
        else:
            flash(f"{queued}.", "success")

    @bp.route("/tickets/<int:ticket_id>/reply", methods=["POST"])
    def reply(ticket_id):
        state = get_state()
        ticket = get_ticket_or_404(ticket_id)
        close = request.form.get("action") == "close"
        newer = [msg for msg in has_newer_messages(ticket, request.form.get("seen_message_id"))
                 if msg.kind in ("inbound", "outbound")]
        if newer:
            # Collision safety: someone wrote since this page was opened. Show it first; the
            # re-rendered page knows the new messages, so sending again goes through.
            who = ", ".join(sorted({msg.from_name or msg.from_email or "an agent" for msg in newer}))
            return rerender(ticket_id, "reply", f"Not sent: {len(newer)} new message(s) arrived "
                            f"since you opened this page (from {who}). Read them, then send again.")
        try:
            message = queue_reply(ticket, current_user._get_current_object(),
                                  request.form.get("text", ""), attachments=_uploads(),
                                  close=close, cc=_cc())
        except ReplyError as exc:
            error = str(exc)
            if request.files.getlist("attachments") and any(f.filename for f in request.files.getlist("attachments")):
                error += " Your text is kept below; attach the files again."
            return rerender(ticket_id, "reply", error)
        state.db.session.commit()
        suffix = " and the ticket closed" if close else ""
        send_and_flash(message, f"Reply sent{suffix}", f"Reply queued{suffix}")
        return redirect(ticket_url(ticket_id))

    @bp.route("/tickets/<int:ticket_id>/note", methods=["POST"])
    def add_note(ticket_id):
        state = get_state()
        ticket = get_ticket_or_404(ticket_id)
        try:
            note = queue_note(ticket, current_user._get_current_object(),
                              request.form.get("text", ""),
                              ticket_url=url_for(f"{bp.name}.ticket", ticket_id=ticket_id,
                                                 _external=True))
        except ReplyError as exc:
            return rerender(ticket_id, "note", str(exc))
        state.db.session.commit()
        if note.send_status == "queued":
            deliver_now(note)
            names = ", ".join(name or addr for name, addr in note.to)
            flash(f"Note added; {names} will be notified.", "success")
        else:
            flash("Note added.", "success")
        return redirect(ticket_url(ticket_id) + f"#message-{note.id}")

    @bp.route("/tickets/<int:ticket_id>/forward", methods=["POST"])
    def forward_ticket(ticket_id):
        state = get_state()
        ticket = get_ticket_or_404(ticket_id)
        try:
            message = forward(ticket, current_user._get_current_object(),
                              request.form.get("to", ""), request.form.get("text", ""))
        except ReplyError as exc:
            return rerender(ticket_id, "forward", str(exc))
        state.db.session.commit()
        to = message.to[0][1]
        send_and_flash(message, f"Forwarded to {to}", f"Forward to {to} queued")
        return redirect(ticket_url(ticket_id))

    @bp.route("/messages/<int:message_id>/retry", methods=["POST"])
    def retry_send(message_id):
        state = get_state()
        msg = state.db.session.get(state.models.Message, message_id)
        if msg is None:
            abort(404)
        get_ticket_or_404(msg.ticket_id)
        if outbox.retry_now(msg):
            state.db.session.commit()
            error = deliver_now(msg)
            flash("Sent." if error is None else "Queued to be sent again.", "success")
        else:
            flash("This message is not waiting to be sent again.", "info")
        return redirect(ticket_url(msg.ticket_id) + f"#message-{msg.id}")
