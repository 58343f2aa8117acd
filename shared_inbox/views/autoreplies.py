"""Settings (admins only): a mailbox's automatic replies -- the acknowledgement of a new
ticket and the out-of-hours reply -- with a preview, and the state of its circuit breaker."""
from __future__ import annotations

from typing import ClassVar

from flask import flash, redirect, render_template, request, url_for

from ..access import get_or_404, require_admin
from ..extension import get_state
from ..forms import Form
from ..services import autoreplies
from ..services.saved_replies import MAX_BODY_LENGTH, PLACEHOLDERS, render_body, template_error

KINDS = (("ack", "Acknowledgement of a new ticket"), ("ooh", "Out-of-hours reply"))
PLACEHOLDER_HINT = ("Placeholders: " + ", ".join("{{ %s }}" % p for p in PLACEHOLDERS
                                                  if not p.startswith("agent.")) + ".")
SAMPLE = {
    "customer": {"name": "Alice Example", "first_name": "Alice", "email": "alice@example.org"},
    "agent": {"name": "", "email": ""},
    "ticket": {"number": 1234, "subject": "Where is my order?", "id": 1234},
}
DEFAULTS = {
    "ack": (autoreplies.DEFAULT_ACK_SUBJECT, autoreplies.DEFAULT_ACK_TEXT),
    "ooh": (autoreplies.DEFAULT_OOH_SUBJECT, autoreplies.DEFAULT_OOH_TEXT),
}


class AutoreplyForm(Form):
    defaults: ClassVar[dict[str, object]] = {
        "ack_enabled": False, "ack_subject": "", "ack_text": "",
        "ooh_enabled": False, "ooh_subject": "", "ooh_text": "",
    }

    @classmethod
    def from_mailbox(cls, mailbox) -> AutoreplyForm:
        data = {}
        for kind, _ in KINDS:
            subject, text = DEFAULTS[kind]
            data[f"{kind}_enabled"] = getattr(mailbox, f"autoreply_{kind}_enabled")
            data[f"{kind}_subject"] = getattr(mailbox, f"autoreply_{kind}_subject") or subject
            data[f"{kind}_text"] = getattr(mailbox, f"autoreply_{kind}_text") or text
        return cls(data)

    @classmethod
    def from_request(cls, formdata) -> AutoreplyForm:
        data = {name: formdata.get(name, "") for name in cls.defaults}
        for kind, _ in KINDS:
            data[f"{kind}_enabled"] = bool(formdata.get(f"{kind}_enabled"))
        return cls(data)

    def validate(self) -> bool:
        for kind, _ in KINDS:
            enabled = bool(self.data.get(f"{kind}_enabled"))
            self.cleaned[f"{kind}_enabled"] = enabled
            subject = self.text(f"{kind}_subject", max_length=500, label="Subject")
            if subject and template_error(subject):
                self.add_error(f"{kind}_subject", template_error(subject))
            text = str(self.data.get(f"{kind}_text") or "").replace("\r\n", "\n")
            if enabled and not text.strip():
                self.add_error(f"{kind}_text", "Write the text of the reply, or turn it off.")
            elif len(text) > MAX_BODY_LENGTH:
                self.add_error(f"{kind}_text", f"The text can be at most {MAX_BODY_LENGTH} "
                               "characters long.")
            elif text.strip() and template_error(text):
                self.add_error(f"{kind}_text", template_error(text))
            self.cleaned[f"{kind}_text"] = text
        return self.is_valid

    def apply(self, mailbox) -> None:
        for kind, _ in KINDS:
            setattr(mailbox, f"autoreply_{kind}_enabled", self.cleaned[f"{kind}_enabled"])
            setattr(mailbox, f"autoreply_{kind}_subject", self.cleaned[f"{kind}_subject"])
            setattr(mailbox, f"autoreply_{kind}_text", self.cleaned[f"{kind}_text"])


def preview(form: AutoreplyForm, mailbox) -> dict:
    """Each reply rendered for a sample customer, as the customer would read it."""
    from ..mail.send import subject_with_token
    from ..services.replies import _with_signature

    context = dict(SAMPLE, mailbox={"name": mailbox.name, "email": mailbox.email_address,
                                    "from_name": mailbox.from_name or ""})
    out = {}
    for kind, _ in KINDS:
        subject = " ".join(render_body(str(form[f"{kind}_subject"]), context).split())
        out[kind] = {
            "subject": subject_with_token(subject, SAMPLE["ticket"]["number"]),
            "text": _with_signature(render_body(str(form[f"{kind}_text"]), context), mailbox),
        }
    return out


def _has_hours(mailbox) -> bool:
    try:
        from ..services.business_hours import schedule_for
    except ImportError:
        return False
    return schedule_for(mailbox) is not None


def register(bp) -> None:
    """Add this module's routes to the dashboard blueprint ``bp``."""

    def render(form, mailbox, status=200, shown=None):
        return render_template(
            "shared_inbox/autoreplies.html", form=form, mailbox=mailbox, kinds=KINDS,
            placeholder_hint=PLACEHOLDER_HINT, preview=shown,
            breaker=autoreplies.breaker_status(mailbox), has_hours=_has_hours(mailbox),
        ), status

    @bp.route("/settings/mailboxes/<int:mailbox_id>/auto-replies", methods=["GET", "POST"])
    def autoreplies_settings(mailbox_id):
        require_admin()
        mailbox = get_or_404("Mailbox", mailbox_id)
        if request.method == "GET":
            form = AutoreplyForm.from_mailbox(mailbox)
            return render(form, mailbox, shown=preview(form, mailbox))
        form = AutoreplyForm.from_request(request.form)
        if not form.validate():
            return render(form, mailbox, 400)
        if request.form.get("action") == "preview":
            return render(form, mailbox, shown=preview(form, mailbox))
        form.apply(mailbox)
        get_state().db.session.commit()
        flash(f"Automatic replies of {mailbox.name} saved.", "success")
        return redirect(url_for(f"{bp.name}.autoreplies_settings", mailbox_id=mailbox.id))
