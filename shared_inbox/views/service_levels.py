"""Settings (admins only): business hours, holidays and auto-close per mailbox; holidays for
every mailbox; SLA policies. Errors show beside the field and what was typed is kept."""
from __future__ import annotations

from datetime import date
from typing import ClassVar

import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for

from ..access import get_or_404, require_admin
from ..services.mailboxes import all_mailboxes
from ..extension import get_state
from ..forms import Form
from ..models import utcnow
from ..services import business_hours as bh
from ..services import sla

MAX_AUTO_CLOSE_DAYS = 365
MAX_MESSAGE = 10_000
PRIORITY_CHOICES = [("", "Any priority")] + [(p, p.title()) for p in sla.PRIORITIES]


# -- holidays typed one a line ---------------------------------------------------------------
def parse_holidays(text: str) -> list[tuple[date, str]]:
    """``"2026-12-25 Christmas"`` one a line -> [(date, name)]; ValueError names the line."""
    out, seen = [], set()
    for number, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        day_text, _, name = line.partition(" ")
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            raise ValueError(f"Line {number} ({line[:40]}): start with a date like "
                             "2026-12-25, then an optional name.") from None
        if day not in seen:
            seen.add(day)
            out.append((day, name.strip()[:120]))
    return sorted(out)


def format_holidays(rows) -> str:
    return "\n".join(f"{r.day.isoformat()} {r.name}".rstrip() for r in rows)


def _holidays(mailbox_id):
    state = get_state()
    m = state.models
    where = (m.BusinessHoliday.mailbox_id.is_(None) if mailbox_id is None
             else m.BusinessHoliday.mailbox_id == mailbox_id)
    return list(state.db.session.scalars(
        sa.select(m.BusinessHoliday).where(where).order_by(m.BusinessHoliday.day)))


def _replace_holidays(mailbox_id, holidays) -> None:
    state = get_state()
    m = state.models
    for row in _holidays(mailbox_id):
        state.db.session.delete(row)
    for day, name in holidays:
        state.db.session.add(m.BusinessHoliday(mailbox_id=mailbox_id, day=day, name=name))


# -- forms -------------------------------------------------------------------------------------
class BusinessHoursForm(Form):
    defaults: ClassVar[dict[str, object]] = {
        "timezone": "UTC", **{f"day_{d}": "" for d in range(7)}, "holidays": "",
        "auto_close_days": "", "auto_close_message": "",
    }

    @classmethod
    def from_mailbox(cls, mailbox) -> BusinessHoursForm:
        hours = mailbox.business_hours or {}
        data = {"timezone": mailbox.timezone or "UTC",
                "holidays": format_holidays(_holidays(mailbox.id)),
                "auto_close_days": str(mailbox.auto_close_days or ""),
                "auto_close_message": mailbox.auto_close_message or ""}
        for d in range(7):
            data[f"day_{d}"] = bh.format_day_hours(hours.get(str(d)))
        return cls(data)

    @classmethod
    def from_request(cls, formdata) -> BusinessHoursForm:
        return cls({name: formdata.get(name, "") for name in cls.defaults})

    def validate(self) -> bool:
        try:
            self.cleaned["timezone"] = bh.valid_timezone(str(self["timezone"])).key
        except bh.BusinessHoursError as exc:
            self.add_error("timezone", str(exc))
        by_day = {}
        for d in range(7):
            try:
                by_day[d] = bh.parse_day_hours(str(self[f"day_{d}"]))
            except bh.BusinessHoursError as exc:
                self.add_error(f"day_{d}", str(exc))
        self.cleaned["business_hours"] = bh.stored_hours(by_day)
        self.convert("holidays", parse_holidays, required=False)
        self.cleaned["holidays"] = self.cleaned.get("holidays") or []
        self.convert("auto_close_days", _days, required=False)
        message = str(self["auto_close_message"]).replace("\r\n", "\n").strip()
        if len(message) > MAX_MESSAGE:
            self.add_error("auto_close_message", f"The message can be at most {MAX_MESSAGE} "
                           "characters long.")
        self.cleaned["auto_close_message"] = message
        return self.is_valid


def _days(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_AUTO_CLOSE_DAYS:
        raise ValueError(f"Enter a number of days from 1 to {MAX_AUTO_CLOSE_DAYS}, or leave it "
                         "empty to never close automatically.")
    return int(value)


def _position(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError("Enter a whole number (lower comes first).") from None
    if not 0 <= number <= 10_000:
        raise ValueError("Enter a number from 0 to 10000.")
    return number


class PolicyForm(Form):
    defaults: ClassVar[dict[str, object]] = {
        "name": "", "position": "0", "is_active": True, "mailbox_id": "", "priority": "",
        "tag_id": "", "first_response": "", "resolution": "",
    }

    @classmethod
    def from_policy(cls, policy) -> PolicyForm:
        return cls({
            "name": policy.name, "position": str(policy.position), "is_active": policy.is_active,
            "mailbox_id": str(policy.mailbox_id or ""), "priority": policy.priority or "",
            "tag_id": str(policy.tag_id or ""),
            "first_response": sla.format_duration(policy.first_response_minutes),
            "resolution": sla.format_duration(policy.resolution_minutes),
        })

    @classmethod
    def from_request(cls, formdata) -> PolicyForm:
        data = {name: formdata.get(name, "") for name in cls.defaults}
        data["is_active"] = bool(formdata.get("is_active"))
        return cls(data)

    def validate(self, mailbox_choices, tag_choices) -> bool:
        self.text("name", required=True, max_length=120, label="Name")
        self.convert("position", _position, label="Order")
        self.cleaned["is_active"] = bool(self.data.get("is_active"))
        for name, choices in (("mailbox_id", mailbox_choices), ("tag_id", tag_choices),
                              ("priority", PRIORITY_CHOICES)):
            value = str(self[name])
            if value not in {key for key, _ in choices}:
                self.add_error(name, "Choose one of the options.")
            elif name == "priority":
                self.cleaned[name] = value or None
            else:
                self.cleaned[name] = int(value) if value else None
        self.convert("first_response", sla.parse_duration, required=False)
        self.convert("resolution", sla.parse_duration, required=False)
        if (not self.errors.get("first_response") and not self.errors.get("resolution")
                and not self.cleaned.get("first_response") and not self.cleaned.get("resolution")):
            self.add_error("first_response", "Give a first-response target, a resolution "
                           "target, or both.")
        return self.is_valid

    def apply(self, policy) -> None:
        policy.name = self.cleaned["name"]
        policy.position = self.cleaned["position"]
        policy.is_active = self.cleaned["is_active"]
        policy.mailbox_id = self.cleaned["mailbox_id"]
        policy.priority = self.cleaned["priority"]
        policy.tag_id = self.cleaned["tag_id"]
        policy.first_response_minutes = self.cleaned.get("first_response")
        policy.resolution_minutes = self.cleaned.get("resolution")


def _updated(changed: int) -> str:
    """The flash's tail after open tickets got new due times (see sla.reapply_policies)."""
    if not changed:
        return ""
    return f" Due times of {changed} open ticket{'s' if changed != 1 else ''} updated."


# -- routes ------------------------------------------------------------------------------------
def sla_info(ticket, now=None) -> dict:
    """What the ticket page shows about its SLA (due times, state, policy name)."""
    now = now or utcnow()
    policy = None
    if ticket.sla_policy_id is not None:
        policy = get_state().db.session.get(get_state().models.SlaPolicy, ticket.sla_policy_id)
    return {
        "state": sla.sla_state(ticket, now), "text": sla.describe_due(ticket, now),
        "policy": policy.name if policy is not None else "",
        "first_response_due_at": ticket.first_response_due_at,
        "resolution_due_at": ticket.resolution_due_at,
        "response_met": ticket.first_response_due_at is not None
        and not sla.response_pending(ticket),
        "resolution_met": ticket.resolution_due_at is not None and ticket.status == "closed",
    }


def register(bp) -> None:
    """Add this module's routes to the dashboard blueprint ``bp``."""

    @bp.context_processor
    def _sla_helpers():
        return {"sla_info": sla_info}

    def session():
        return get_state().db.session

    def models():
        return get_state().models

    def choices():
        m = models()
        boxes = [("", "Any mailbox")] + [(str(b.id), b.name) for b in all_mailboxes()]
        tags = [("", "Any tag")] + [(str(t.id), t.name) for t in session().scalars(
            sa.select(m.Tag).order_by(sa.func.lower(m.Tag.name)))]
        return boxes, tags

    def policies():
        m = models()
        return list(session().scalars(
            sa.select(m.SlaPolicy).order_by(m.SlaPolicy.position, m.SlaPolicy.id)))

    def render_index(holiday_form=None, status=200):
        holiday_form = holiday_form or Form({"holidays": format_holidays(_holidays(None))})
        hours = {b.id: bh.describe(bh.schedule_for(b)) for b in all_mailboxes()}
        return render_template(
            "shared_inbox/sla_policies.html", policies=policies(), mailboxes=all_mailboxes(),
            hours=hours, holiday_form=holiday_form, fmt=sla.format_duration,
        ), status

    @bp.route("/settings/service-levels/")
    def service_levels():
        require_admin()
        return render_index()

    @bp.route("/settings/service-levels/holidays", methods=["POST"])
    def global_holidays():
        require_admin()
        form = Form({"holidays": request.form.get("holidays", "")})
        holidays = form.convert("holidays", parse_holidays, required=False)
        if not form.is_valid:
            return render_index(form, 400)
        _replace_holidays(None, holidays or [])
        session().flush()
        changed = sla.reapply_policies()
        session().commit()
        flash(f"Holidays for every mailbox saved.{_updated(changed)}", "success")
        return redirect(url_for(f"{bp.name}.service_levels"))

    def render_policy(form, policy=None, status=200):
        boxes, tags = choices()
        return render_template(
            "shared_inbox/sla_policy_form.html", form=form, policy=policy,
            mailbox_choices=boxes, tag_choices=tags, priority_choices=PRIORITY_CHOICES,
        ), status

    @bp.route("/settings/service-levels/new", methods=["GET", "POST"])
    def sla_policy_new():
        require_admin()
        if request.method == "GET":
            return render_policy(PolicyForm())
        form = PolicyForm.from_request(request.form)
        if not form.validate(*choices()):
            return render_policy(form, status=400)
        policy = models().SlaPolicy()
        form.apply(policy)
        session().add(policy)
        session().flush()
        changed = sla.reapply_policies()
        session().commit()
        flash(f"SLA policy {policy.name} added.{_updated(changed)}", "success")
        return redirect(url_for(f"{bp.name}.service_levels"))

    @bp.route("/settings/service-levels/<int:policy_id>", methods=["GET", "POST"])
    def sla_policy_edit(policy_id):
        require_admin()
        policy = get_or_404("SlaPolicy", policy_id)
        if request.method == "GET":
            return render_policy(PolicyForm.from_policy(policy), policy)
        form = PolicyForm.from_request(request.form)
        if not form.validate(*choices()):
            return render_policy(form, policy, 400)
        form.apply(policy)
        session().flush()
        changed = sla.reapply_policies()
        session().commit()
        flash(f"SLA policy {policy.name} saved.{_updated(changed)}", "success")
        return redirect(url_for(f"{bp.name}.service_levels"))

    @bp.route("/settings/service-levels/<int:policy_id>/delete", methods=["POST"])
    def sla_policy_delete(policy_id):
        require_admin()
        policy = get_or_404("SlaPolicy", policy_id)
        name = policy.name
        session().delete(policy)
        session().flush()
        changed = sla.reapply_policies()
        session().commit()
        flash(f"SLA policy {name} deleted.{_updated(changed)}", "success")
        return redirect(url_for(f"{bp.name}.service_levels"))

    def render_hours(form, mailbox, status=200):
        return render_template(
            "shared_inbox/business_hours.html", form=form, mailbox=mailbox,
            weekdays=list(enumerate(bh.WEEKDAYS)), zones=bh.timezone_names(),
        ), status

    @bp.route("/settings/mailboxes/<int:mailbox_id>/business-hours", methods=["GET", "POST"])
    def business_hours_settings(mailbox_id):
        require_admin()
        mailbox = get_or_404("Mailbox", mailbox_id)
        if request.method == "GET":
            return render_hours(BusinessHoursForm.from_mailbox(mailbox), mailbox)
        form = BusinessHoursForm.from_request(request.form)
        if not form.validate():
            return render_hours(form, mailbox, 400)
        mailbox.timezone = form.cleaned["timezone"]
        mailbox.business_hours = form.cleaned["business_hours"]
        mailbox.auto_close_days = form.cleaned.get("auto_close_days")
        mailbox.auto_close_message = form.cleaned["auto_close_message"]
        _replace_holidays(mailbox.id, form.cleaned["holidays"])
        session().flush()
        changed = sla.reapply_policies()
        session().commit()
        flash(f"Business hours of {mailbox.name} saved.{_updated(changed)}", "success")
        return redirect(url_for(f"{bp.name}.business_hours_settings", mailbox_id=mailbox.id))
