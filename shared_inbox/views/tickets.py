"""A ticket's page, its actions, and downloads of attachments and original messages."""
from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from flask import (
    abort, flash, make_response, redirect, render_template, request, send_file, url_for,
)
from flask_login import current_user

from ..access import can_see_mailbox, get_ticket_or_404, user_id
from ..config import cv
from ..extension import get_state
from ..mail.sanitize import sanitize_html
from ..models import STATUSES, utcnow
from ..services import presence
from ..services.complete import complete_messages
from ..services.saved_replies import rendered_saved_replies
from . import CONTENT_SECURITY_POLICY
from ..services.reading import mark_read
from ..services.tickets import (
    MergeError, SplitError, TicketActionError, assign, assignable_agents, change_status,
    find_user, merge_tickets, previous_conversations, snooze, split_message, unsnooze,
)

#: Raster images only: an SVG (or anything else) is never rendered on our origin.
INLINE_SAFE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}

CID_SRC = re.compile(r'src="cid:([^"]*)"')

#: The mail's own policy inside its sandboxed frame, on top of the page's (which it inherits):
#: nothing but inline styles and images (ours: inline attachments; remote ones only once the
#: agent asked), no fonts, forms, frames or base URL.
FRAME_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src {images}; "
             "form-action 'none'; base-uri 'none'")


def html_for_display(message, endpoint: str, show_images: bool = False) -> str | None:
    """Stored (already sanitized) HTML with ``cid:`` images pointed at our download view.

    ``show_images`` puts the blocked remote images (``data-remote-src``) back in ``src``.
    """
    if not message.body_html:
        return None
    body = message.body_html
    if show_images:
        body = sanitize_html(body, allow_remote_images=True)
    by_cid = {a.content_id: a for a in message.attachments if a.content_id}

    def _swap(match):
        att = by_cid.get(match.group(1))
        if att is None or att.content_type not in INLINE_SAFE_TYPES:
            return 'src=""'
        return f'src="{url_for(endpoint, attachment_id=att.id, inline=1)}"'

    images = "'self' data: https: http:" if show_images else "'self' data:"
    policy = FRAME_CSP.format(images=images)
    return (f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
            + CID_SRC.sub(_swap, body))


def has_remote_images(message) -> bool:
    return bool(message.body_html) and "data-remote-src=" in message.body_html


def parse_snooze_time(value: str, tz_offset: str = "") -> datetime:
    """A ``datetime-local`` value (UTC, or local with a JS ``getTimezoneOffset`` in minutes)."""
    try:
        when = datetime.fromisoformat((value or "").strip())
    except ValueError:
        raise TicketActionError("Enter a date and time to snooze until.") from None
    if when.tzinfo is not None:
        return when.astimezone(timezone.utc).replace(tzinfo=None, second=0, microsecond=0)
    try:
        offset = int(tz_offset) if str(tz_offset or "").strip() else 0
    except ValueError:
        offset = 0
    if abs(offset) <= 24 * 60:
        when += timedelta(minutes=offset)
    return when.replace(second=0, microsecond=0)


def _me():
    return current_user._get_current_object()


def register(bp):
    def back(t):
        return redirect(url_for(f"{bp.name}.ticket", ticket_id=t.id))

    @bp.route("/tickets/<int:ticket_id>")
    def ticket(ticket_id):
        state = get_state()
        m = state.models
        t = get_ticket_or_404(ticket_id)
        if t.merged_into_id is not None and request.args.get("view") != "merged":
            target = state.db.session.get(m.Ticket, t.merged_into_id)
            if target is not None and can_see_mailbox(target.mailbox_id):
                flash(f"Ticket #{t.number} was merged into #{target.number}; "
                      "its messages are here.", "info")
                return redirect(url_for(f"{bp.name}.ticket", ticket_id=target.id))
        me = _me()
        # The writes first, committed before anything is loaded: a commit expires every
        # loaded object, and the template would then reload each message on its own.
        if request.headers.get("X-Requested-With") != "fetch":
            # Collision safety: others see this agent at once. Not for the page an in-place
            # action fetches (inbox.js): that would reset "replying" while a draft is open.
            presence.heartbeat(t, me)
        mark_read(t, me)  # commits
        # Mail the poller has just accepted from its headers: parse its body now rather
        # than show it empty (services/accept.py; the poller would do it a moment later).
        pending = list(state.db.session.scalars(sa.select(m.Message.id).where(
            m.Message.ticket_id == t.id, m.Message.body_pending.is_(True))))
        if pending:
            complete_messages(pending)  # commits
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
        show_images = request.args.get("images", type=int)
        html = {msg.id: html_for_display(msg, endpoint, show_images=msg.id == show_images)
                for msg in messages}
        remote_images = {msg.id for msg in messages if has_remote_images(msg)}
        agents = assignable_agents(t.mailbox)
        response = make_response(render_template(
            "shared_inbox/ticket.html", ticket=t, messages=messages, html=html,
            activity=activity, statuses=STATUSES, remote_images=remote_images,
            images_shown=show_images if show_images in remote_images else None,
            agents=agents, agent_ids=[user_id(a) for a in agents], me_id=user_id(me),
            user_id=user_id,
            previous=previous_conversations(t), saved_replies=rendered_saved_replies(t, me),
            presence_others=presence.others(t, me), presence_interval=cv("PRESENCE_INTERVAL"),
            newest_message_id=max((msg.id for msg in messages), default=0),
            merged_into=state.db.session.get(m.Ticket, t.merged_into_id)
            if t.merged_into_id else None,
            now=utcnow(), snooze_default=(utcnow() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        ))
        if show_images in remote_images:
            # The one message the agent asked for may load its remote images.
            response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
                "img-src 'self' data:", "img-src 'self' data: https: http:")
        return response

    @bp.route("/tickets/<int:ticket_id>/assign", methods=["POST"])
    def assign_ticket(ticket_id):
        state = get_state()
        t = get_ticket_or_404(ticket_id)
        raw = request.form.get("assignee_id", "").strip()
        assignee = None
        if raw:
            assignee = find_user(raw)
            if assignee is None:
                flash("Choose an agent to assign the ticket to.", "error")
                return back(t)
        previous = t.assignee
        try:
            changed = assign(t, assignee, actor=_me())
        except TicketActionError as exc:
            state.db.session.rollback()
            flash(str(exc), "error")
            return back(t)
        if changed:
            state.db.session.commit()
            name = state.extension.display_user
            if assignee is None:
                flash(f"Ticket #{t.number} is no longer assigned to {name(previous)['name']}.",
                      "success")
            else:
                flash(f"Ticket #{t.number} is now assigned to {name(assignee)['name']}.",
                      "success")
        elif assignee is None:  # every action says what happened, "nothing" included
            flash(f"Ticket #{t.number} is not assigned to anyone.", "info")
        else:
            flash(f"Ticket #{t.number} is already assigned to "
                  f"{state.extension.display_user(assignee)['name']}.", "info")
        return back(t)

    @bp.route("/tickets/<int:ticket_id>/snooze", methods=["POST"])
    def snooze_ticket(ticket_id):
        state = get_state()
        t = get_ticket_or_404(ticket_id)
        try:
            until = parse_snooze_time(request.form.get("until", ""),
                                      request.form.get("tz_offset", ""))
            snooze(t, until, actor=_me())
        except TicketActionError as exc:
            state.db.session.rollback()
            flash(str(exc), "error")
            return back(t)
        state.db.session.commit()
        flash(f"Ticket #{t.number} is snoozed until {until:%Y-%m-%d %H:%M} UTC.", "success")
        return back(t)

    @bp.route("/tickets/<int:ticket_id>/unsnooze", methods=["POST"])
    def unsnooze_ticket(ticket_id):
        state = get_state()
        t = get_ticket_or_404(ticket_id)
        if unsnooze(t, actor=_me()):
            state.db.session.commit()
            flash(f"Ticket #{t.number} is no longer snoozed.", "success")
        else:
            flash(f"Ticket #{t.number} was not snoozed.", "info")
        return back(t)

    @bp.route("/tickets/<int:ticket_id>/merge", methods=["POST"])
    def merge_ticket(ticket_id):
        state = get_state()
        t = get_ticket_or_404(ticket_id)
        raw = request.form.get("target", "").strip().lstrip("#").strip()
        if not raw.isdigit():
            flash("Enter the number of the ticket to merge into.", "error")
            return back(t)
        number = int(raw)
        target = state.db.session.get(state.models.Ticket, number) if number < 2**31 else None
        try:
            merge_tickets(t, target, actor=_me())
        except MergeError as exc:
            state.db.session.rollback()
            message = str(exc)
            if message == "There is no such ticket.":
                message = f"There is no ticket #{raw} you can see."
            flash(message, "error")
            return back(t)
        state.db.session.commit()
        flash(f"Ticket #{t.number} was merged into #{target.number}.", "success")
        return back(target)

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
        else:
            flash(f"Ticket #{t.number} is already {status}.", "info")
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
