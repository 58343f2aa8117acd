"""Saved replies: managed by admins in the settings, used by agents on a ticket."""
from __future__ import annotations

from typing import ClassVar

from flask import flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from ..access import get_or_404, get_ticket_or_404, require_admin
from ..services.mailboxes import all_mailboxes
from ..extension import get_state
from ..forms import Form
from ..services.saved_replies import (
    MAX_BODY_LENGTH, PLACEHOLDERS, all_saved_replies, rendered_saved_replies, template_error,
)


class SavedReplyForm(Form):
    defaults: ClassVar[dict[str, object]] = {"title": "", "body": "", "mailbox_id": ""}

    @classmethod
    def from_reply(cls, reply) -> SavedReplyForm:
        return cls({"title": reply.title, "body": reply.body,
                    "mailbox_id": "" if reply.mailbox_id is None else str(reply.mailbox_id)})

    @classmethod
    def from_request(cls, formdata) -> SavedReplyForm:
        return cls({name: formdata.get(name, "") for name in cls.defaults})

    def validate(self, mailbox_ids: set[int]) -> bool:
        self.text("title", required=True, max_length=200, label="Title")
        # The body keeps its whitespace: it is pasted into the reply as typed.
        body = str(self.data.get("body") or "")
        if not body.strip():
            self.add_error("body", "Body is required.")
        elif len(body) > MAX_BODY_LENGTH:
            self.add_error("body", f"Body can be at most {MAX_BODY_LENGTH} characters long.")
        else:
            error = template_error(body)
            if error:
                self.add_error("body", error)
            self.cleaned["body"] = body
        raw = str(self.data.get("mailbox_id") or "").strip()
        if not raw:
            self.cleaned["mailbox_id"] = None
        elif raw.isdigit() and int(raw) in mailbox_ids:
            self.cleaned["mailbox_id"] = int(raw)
        else:
            self.add_error("mailbox_id", "Choose one of the options.")
        return self.is_valid

    def apply(self, reply) -> None:
        reply.title = self.cleaned["title"]
        reply.body = self.cleaned["body"]
        reply.mailbox_id = self.cleaned["mailbox_id"]


PLACEHOLDER_HINT = (
    "Placeholders: " + ", ".join("{{ %s }}" % p for p in PLACEHOLDERS)
    + ". Unknown placeholders are left empty; {% if customer.name %}...{% endif %} works too."
)


def register(bp):
    def render_form(form, reply=None, status=200):
        mailboxes = all_mailboxes()
        choices = [("", "All mailboxes")] + [(str(mb.id), mb.name) for mb in mailboxes]
        return render_template("shared_inbox/saved_reply_form.html", form=form, reply=reply,
                               mailbox_choices=choices, placeholder_hint=PLACEHOLDER_HINT), status

    def reply_form(reply=None):
        require_admin()
        state = get_state()
        if request.method == "GET":
            form = SavedReplyForm() if reply is None else SavedReplyForm.from_reply(reply)
            return render_form(form, reply)
        form = SavedReplyForm.from_request(request.form)
        if not form.validate({mb.id for mb in all_mailboxes()}):
            return render_form(form, reply, 400)
        creating = reply is None
        if creating:
            reply = state.models.SavedReply(created_by_id=_my_id())
            state.db.session.add(reply)
        form.apply(reply)
        state.db.session.commit()
        flash(f"Saved reply {reply.title} {'added' if creating else 'saved'}.", "success")
        return redirect(url_for(f"{bp.name}.saved_replies"))

    @bp.route("/settings/saved-replies/")
    def saved_replies():
        require_admin()
        return render_template("shared_inbox/saved_replies.html", replies=all_saved_replies(),
                               mailboxes={mb.id: mb for mb in all_mailboxes()})

    @bp.route("/settings/saved-replies/new", methods=["GET", "POST"])
    def saved_reply_new():
        return reply_form(None)

    @bp.route("/settings/saved-replies/<int:reply_id>/edit", methods=["GET", "POST"])
    def saved_reply_edit(reply_id):
        require_admin()
        return reply_form(get_or_404("SavedReply", reply_id))

    @bp.route("/settings/saved-replies/<int:reply_id>/delete", methods=["POST"])
    def saved_reply_delete(reply_id):
        require_admin()
        state = get_state()
        reply = get_or_404("SavedReply", reply_id)
        title = reply.title
        state.db.session.delete(reply)
        state.db.session.commit()
        flash(f"Saved reply {title} deleted.", "success")
        return redirect(url_for(f"{bp.name}.saved_replies"))

    @bp.route("/tickets/<int:ticket_id>/saved-replies")
    def ticket_saved_replies(ticket_id):
        """JSON for the reply form: the replies usable here, rendered for this ticket."""
        t = get_ticket_or_404(ticket_id)
        q = request.args.get("q", "")[:200]
        return jsonify({"ticket": t.id, "q": q, "saved_replies": rendered_saved_replies(
            t, current_user._get_current_object(), q)})


def _my_id():
    from ..access import user_id

    return user_id(current_user._get_current_object())
