"""Public pages (no login): the contact form.

``GET/POST <PUBLIC_URL_PREFIX>/contact`` (default mailbox) and ``/contact/<slug>`` (a mailbox
of ``WEBFORM_MAILBOXES``). A host can also embed the form in its own page with the macro in
``shared_inbox/_webform_macros.html``; it posts here, and errors are shown on this page,
beside the field, with the input kept. CSRF is checked by the public blueprint.
"""
from __future__ import annotations

from typing import ClassVar

from flask import abort, redirect, render_template, request, session, url_for

from ..config import cv
from ..csrf import csrf_token
from ..extension import get_state
from ..forms import Form, parse_email
from ..services.replies import Upload
from ..services.webform import (MAX_NAME, MAX_SUBJECT, UnknownForm, claim_slot, create_ticket,
                                form_mailbox, rate_limited, record_hit)

HONEYPOT = "website"
DONE_KEY = "_shared_inbox_webform_done"
EXPIRED = ("The form expired or did not come from this site, so nothing was sent yet. We "
           "kept what you wrote: check it and send it again.")
RATE_LIMITED = ("You have sent several messages in a short time. Please wait an hour, or "
                "reply to the confirmation mail of your earlier message.")


class WebformForm(Form):
    defaults: ClassVar[dict[str, object]] = {"name": "", "email": "", "subject": "",
                                             "message": ""}

    def __init__(self, data=None):
        super().__init__(data)
        self.uploads: list[Upload] = []

    @classmethod
    def from_request(cls, formdata) -> WebformForm:
        return cls({name: formdata.get(name, "") for name in cls.defaults})

    def validate(self, files) -> bool:
        self.text("name", required=True, max_length=MAX_NAME, label="Your name")
        self.convert("email", parse_email, label="Your email address")
        self.text("subject", required=True, max_length=MAX_SUBJECT, label="Subject")
        message = str(self.data.get("message") or "").replace("\r\n", "\n")
        limit = int(cv("WEBFORM_MAX_TEXT"))
        if not message.strip():
            self.add_error("message", "Your message is required.")
        elif len(message) > limit:
            self.add_error("message", f"Your message is {len(message)} characters long; "
                           f"at most {limit} fit. Shorten it or send the rest in a reply.")
        else:
            self.cleaned["message"] = message
        self._files(files)
        return self.is_valid

    def _files(self, files) -> None:
        files = [f for f in files if f is not None and f.filename]
        max_files = int(cv("WEBFORM_MAX_FILES"))
        limit = int(cv("WEBFORM_MAX_UPLOAD_SIZE"))
        if len(files) > max_files:
            self.add_error("attachments", f"Attach at most {max_files} files."
                           if max_files else "This form takes no attachments.")
            return
        total = 0
        for storage in files:
            data = storage.stream.read(limit - total + 1)
            total += len(data)
            if total > limit:
                self.add_error("attachments", f"The files are larger than {limit / 1048576:.0f} "
                               "MB together. Choose fewer or smaller files.")
                return
            self.uploads.append(Upload(filename=storage.filename,
                                       content_type=storage.mimetype or "application/octet-stream",
                                       data=data))


def form_context(slug=None) -> dict:
    """What the embeddable macro needs in any template of the host."""
    return {"action": _action(slug), "csrf_token": csrf_token(), "honeypot": HONEYPOT,
            "max_files": int(cv("WEBFORM_MAX_FILES")),
            "max_upload_mb": int(cv("WEBFORM_MAX_UPLOAD_SIZE")) // 1048576,
            "max_text": int(cv("WEBFORM_MAX_TEXT"))}


def _action(slug=None) -> str:
    name = f"{get_state().blueprint_name}_public"
    if slug:
        return url_for(f"{name}.contact_for", slug=slug)
    return url_for(f"{name}.contact")


def _client_ip() -> str:
    # Behind a proxy the host applies werkzeug's ProxyFix, which sets remote_addr.
    return request.remote_addr or "unknown"


def register_public(bp) -> None:
    """Add this module's routes to the public blueprint ``bp``."""

    @bp.app_context_processor
    def _webform_helpers():
        return {"si_webform": {"form": form_context, "empty": WebformForm}}

    def render(form, slug, mailbox, status=200, error=None):
        return render_template("shared_inbox/webform.html", form=form, slug=slug,
                               mailbox=mailbox, error=error, wf=form_context(slug)), status

    def handle(slug):
        try:
            mailbox = form_mailbox(slug)
        except UnknownForm:
            abort(404)
        if request.method == "GET":
            return render(WebformForm(), slug, mailbox)
        state = get_state()
        ip = _client_ip()
        form = WebformForm.from_request(request.form)
        if rate_limited(ip):
            return render(form, slug, mailbox, 429, RATE_LIMITED)
        if request.form.get(HONEYPOT):
            # A bot filled the invisible field: look like success, store nothing.
            record_hit(ip)
            state.db.session.commit()
            session[DONE_KEY] = {"number": None, "email": ""}
            return redirect(url_for(f"{bp.name}.contact_thanks"))
        if not form.validate(request.files.getlist("attachments")):
            state.db.session.rollback()
            return render(form, slug, mailbox, 422)
        c = form.cleaned
        if not claim_slot(ip):  # another worker took the hour's last submission meanwhile
            return render(form, slug, mailbox, 429, RATE_LIMITED)
        ticket, message, _ = create_ticket(
            mailbox, name=c["name"], email=c["email"], subject=c["subject"],
            text=c["message"], uploads=form.uploads)
        state.db.session.commit()
        number, message_id = ticket.number, message.id
        from ..services.automation import process_one

        process_one(message_id)
        session[DONE_KEY] = {"number": number, "email": c["email"]}
        return redirect(url_for(f"{bp.name}.contact_thanks"))

    @bp.errorhandler(400)
    def _expired(error):
        """A contact form whose CSRF token expired (an old tab, a lost session): show it
        again with what the visitor wrote and a fresh token, instead of losing the text."""
        if request.method != "POST" or request.endpoint not in (
                f"{bp.name}.contact", f"{bp.name}.contact_for"):
            return error
        slug = (request.view_args or {}).get("slug")
        try:
            mailbox = form_mailbox(slug)
        except UnknownForm:
            return error
        return render(WebformForm.from_request(request.form), slug, mailbox, 400, EXPIRED)

    @bp.route("/contact", methods=["GET", "POST"])
    def contact():
        return handle(None)

    @bp.route("/contact/<slug>", methods=["GET", "POST"])
    def contact_for(slug):
        return handle(slug)

    @bp.route("/contact/thanks")
    def contact_thanks():
        done = session.pop(DONE_KEY, None)
        if done is None:
            return redirect(url_for(f"{bp.name}.contact"))
        return render_template("shared_inbox/webform_thanks.html", done=done)
