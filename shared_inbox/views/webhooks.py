"""Settings (admins only): outgoing webhooks, a "send test" button and the last deliveries."""
from __future__ import annotations

import secrets
from typing import ClassVar

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for

from .. import signals
from ..access import get_or_404, require_admin
from ..extension import get_state
from ..forms import Form
from ..services.webhooks import (
    deliver_due, is_http_url, recent_deliveries, retry_now, send_test,
)

EVENT_LABELS = {
    "ticket.created": "A ticket is opened",
    "message.received": "A customer writes (new or existing ticket)",
    "reply.sent": "A reply was delivered to the customer",
    "note.added": "An agent adds an internal note (its text is sent)",
    "ticket.assigned": "A ticket is assigned or unassigned",
    "ticket.status_changed": "A ticket's status changes",
}
SECRET_MIN = 16


def event_choices() -> list[tuple[str, str]]:
    return [(event, EVENT_LABELS.get(event, event)) for event in signals.ALL]


def parse_url(value: str) -> str:
    if len(value) > 2000:
        raise ValueError("The URL can be at most 2000 characters long.")
    if not is_http_url(value):
        raise ValueError("Enter an http:// or https:// URL, like https://hooks.slack.com/...")
    return value


class WebhookForm(Form):
    """Add or edit a webhook; the secret is write-only (blank on edit keeps it)."""

    defaults: ClassVar[dict[str, object]] = {"name": "", "url": "", "events": [],
                                             "is_active": True}

    def __init__(self, data=None, *, creating: bool):
        super().__init__(data)
        self.creating = creating
        self.secret = ""

    @classmethod
    def blank(cls) -> WebhookForm:
        form = cls(creating=True)
        # A strong secret to copy into the receiver; the admin may replace it.
        form.secret = secrets.token_hex(32)
        return form

    @classmethod
    def from_webhook(cls, hook) -> WebhookForm:
        return cls({"name": hook.name, "url": hook.url, "events": list(hook.events or []),
                    "is_active": hook.is_active}, creating=False)

    @classmethod
    def from_request(cls, formdata, *, creating: bool) -> WebhookForm:
        form = cls({"name": formdata.get("name", ""), "url": formdata.get("url", ""),
                    "events": formdata.getlist("events"),
                    "is_active": bool(formdata.get("is_active"))}, creating=creating)
        form.secret = formdata.get("secret", "").strip()
        return form

    def validate(self) -> bool:
        self.text("name", max_length=120, label="Name")
        self.convert("url", parse_url, label="URL")
        chosen = [e for e in self.data.get("events") or [] if e]
        unknown = [e for e in chosen if e not in signals.ALL]
        if unknown or not chosen:
            self.add_error("events", "Choose at least one event." if not chosen
                           else "Choose events from the list.")
        else:
            self.cleaned["events"] = [e for e in signals.ALL if e in chosen]
        if self.creating and not self.secret:
            self.add_error("secret", "A secret is required: the receiver checks the signature "
                           "with it.")
        elif self.secret and not SECRET_MIN <= len(self.secret) <= 500:
            self.add_error("secret", f"Use a secret of {SECRET_MIN} to 500 characters.")
        self.cleaned["is_active"] = bool(self.data.get("is_active"))
        return self.is_valid

    def apply(self, hook) -> None:
        hook.name = self.cleaned["name"]
        hook.url = self.cleaned["url"]
        hook.events = self.cleaned["events"]
        hook.is_active = self.cleaned["is_active"]
        if self.secret:
            hook.secret = self.secret


def register(bp):
    def render_form(form, hook=None, status=200):
        return render_template(
            "shared_inbox/webhook_form.html", form=form, hook=hook, events=event_choices(),
            deliveries=recent_deliveries(hook) if hook is not None else [],
        ), status

    @bp.route("/settings/webhooks/")
    def webhooks():
        require_admin()
        state = get_state()
        m = state.models
        hooks = list(state.db.session.scalars(sa.select(m.Webhook).order_by(m.Webhook.id)))
        last = {hook.id: (recent_deliveries(hook, 1) or [None])[0] for hook in hooks}
        return render_template("shared_inbox/webhooks.html", hooks=hooks, last=last,
                               labels=EVENT_LABELS)

    @bp.route("/settings/webhooks/new", methods=["GET", "POST"])
    def webhook_new():
        require_admin()
        if request.method == "GET":
            return render_form(WebhookForm.blank())
        state = get_state()
        form = WebhookForm.from_request(request.form, creating=True)
        if not form.validate():
            return render_form(form, status=400)
        hook = state.models.Webhook()
        form.apply(hook)
        state.db.session.add(hook)
        state.db.session.commit()
        flash(f"Webhook {hook.name or hook.url} added. Use \"Send a test\" to check it.",
              "success")
        return redirect(url_for(f"{bp.name}.webhook_edit", webhook_id=hook.id))

    @bp.route("/settings/webhooks/<int:webhook_id>", methods=["GET", "POST"])
    def webhook_edit(webhook_id):
        require_admin()
        state = get_state()
        hook = get_or_404("Webhook", webhook_id)
        if request.method == "GET":
            return render_form(WebhookForm.from_webhook(hook), hook)
        form = WebhookForm.from_request(request.form, creating=False)
        if not form.validate():
            return render_form(form, hook, 400)
        form.apply(hook)
        state.db.session.commit()
        flash(f"Webhook {hook.name or hook.url} saved.", "success")
        return redirect(url_for(f"{bp.name}.webhook_edit", webhook_id=hook.id))

    @bp.route("/settings/webhooks/<int:webhook_id>/test", methods=["POST"])
    def webhook_test(webhook_id):
        require_admin()
        hook = get_or_404("Webhook", webhook_id)
        delivery = send_test(hook)
        if delivery.status == "delivered":
            flash(f"Test delivered (HTTP {delivery.response_code}).", "success")
        else:
            flash(f"Test not delivered: {delivery.error}. It will be retried like any "
                  "delivery.", "error")
        return redirect(url_for(f"{bp.name}.webhook_edit", webhook_id=hook.id))

    @bp.route("/settings/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/retry",
              methods=["POST"])
    def webhook_delivery_retry(webhook_id, delivery_id):
        require_admin()
        state = get_state()
        hook = get_or_404("Webhook", webhook_id)
        delivery = state.db.session.get(state.models.WebhookDelivery, delivery_id)
        if delivery is None or delivery.webhook_id != hook.id:
            abort(404)
        if retry_now(delivery):
            state.db.session.commit()
            deliver_due(only_ids=[delivery.id])
            state.db.session.refresh(delivery)
            if delivery.status == "delivered":
                flash(f"Delivered (HTTP {delivery.response_code}).", "success")
            else:
                flash(f"Not delivered: {delivery.error}.", "error")
        return redirect(url_for(f"{bp.name}.webhook_edit", webhook_id=hook.id))

    @bp.route("/settings/webhooks/<int:webhook_id>/delete", methods=["POST"])
    def webhook_delete(webhook_id):
        require_admin()
        state = get_state()
        hook = get_or_404("Webhook", webhook_id)
        label = hook.name or hook.url
        m = state.models
        state.db.session.execute(
            sa.delete(m.WebhookDelivery).where(m.WebhookDelivery.webhook_id == hook.id))
        state.db.session.delete(hook)
        state.db.session.commit()
        flash(f"Webhook {label} deleted.", "success")
        return redirect(url_for(f"{bp.name}.webhooks"))
