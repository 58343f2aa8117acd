"""Rules settings (admins only): the ordered list, the form, enable/disable and a dry run.

The form is server-rendered rows (no script): a condition row is what to look at, how to
compare and a value; an action row is one option (ids are part of it) and, for tags and
email notifications, a text. "Add a condition"/"Add an action" re-render the form with one
more empty row, keeping what was typed; "Dry run" shows which of the last 200 tickets the
rule as typed would match, without saving anything.
"""
from __future__ import annotations

from typing import ClassVar

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..access import get_or_404, require_admin, user_id
from ..services.mailboxes import all_mailboxes
from ..extension import get_state
from ..forms import Form
from ..services.rules import (
    DRY_RUN_TICKETS, FIELD_OPERATORS, FIELDS, MATCHES, OPERATORS, TRIGGERS, RuleError,
    action_choices, action_from_choice, action_scope_error, action_to_choice, clean_condition,
    describe_action, describe_condition, dry_run, move_rule, next_position, ordered_rules,
)

MAX_ROWS = 30
CONDITION_PARTS = ("field", "op", "key", "value")
ACTION_PARTS = ("type", "value")


class RuleForm(Form):
    defaults: ClassVar[dict[str, object]] = {
        "name": "", "mailbox_id": "", "trigger": "new", "match": "all", "is_active": True,
        "stop_processing": False,
    }

    def __init__(self, data=None, conditions=None, actions=None):
        super().__init__(data)
        self.conditions: list[dict] = list(conditions or [])
        self.actions: list[dict] = list(actions or [])

    @classmethod
    def blank(cls) -> RuleForm:
        form = cls()
        form.add_rows(conditions=2, actions=2)
        return form

    @classmethod
    def from_rule(cls, rule) -> RuleForm:
        state = get_state()
        conditions = []
        for c in rule.conditions or []:
            value = c.get("value", "")
            if c.get("field") == "mailbox":
                mailbox = state.db.session.get(state.models.Mailbox, value)
                value = mailbox.email_address if mailbox is not None else ""
            conditions.append({"field": c.get("field", ""), "op": c.get("op", ""),
                               "key": c.get("key", ""), "value": str(value)})
        actions = [dict(zip(ACTION_PARTS, action_to_choice(a))) for a in rule.actions or []]
        form = cls({"name": rule.name,
                    "mailbox_id": "" if rule.mailbox_id is None else str(rule.mailbox_id),
                    "trigger": rule.trigger, "match": rule.match, "is_active": rule.is_active,
                    "stop_processing": rule.stop_processing}, conditions, actions)
        form.add_rows(conditions=1, actions=1)
        return form

    @classmethod
    def from_request(cls, formdata) -> RuleForm:
        data = {name: formdata.get(name, "") for name in ("name", "mailbox_id", "trigger",
                                                          "match")}
        data["is_active"] = bool(formdata.get("is_active"))
        data["stop_processing"] = bool(formdata.get("stop_processing"))
        conditions, actions = [], []
        for i in range(MAX_ROWS):
            if f"cond-{i}-field" in formdata:
                conditions.append({p: formdata.get(f"cond-{i}-{p}", "")[:2000]
                                   for p in CONDITION_PARTS})
            if f"act-{i}-type" in formdata:
                actions.append({p: formdata.get(f"act-{i}-{p}", "")[:2000]
                                for p in ACTION_PARTS})
        return cls(data, conditions, actions)

    def add_rows(self, *, conditions: int = 0, actions: int = 0) -> None:
        for _ in range(conditions):
            if len(self.conditions) < MAX_ROWS:
                self.conditions.append(dict.fromkeys(CONDITION_PARTS, ""))
        for _ in range(actions):
            if len(self.actions) < MAX_ROWS:
                self.actions.append(dict.fromkeys(ACTION_PARTS, ""))

    def validate(self, mailbox_ids: set[int], choices: list[tuple[str, str]]) -> bool:
        self.text("name", required=True, max_length=120, label="Name")
        raw = str(self.data.get("mailbox_id") or "").strip()
        if not raw:
            self.cleaned["mailbox_id"] = None
        elif raw.isdigit() and int(raw) in mailbox_ids:
            self.cleaned["mailbox_id"] = int(raw)
        else:
            self.add_error("mailbox_id", "Choose one of the options.")
        for name, options in (("trigger", TRIGGERS), ("match", MATCHES)):
            if self.data.get(name) in {k for k, _ in options}:
                self.cleaned[name] = self.data[name]
            else:
                self.add_error(name, "Choose one of the options.")
        self.cleaned["is_active"] = bool(self.data.get("is_active"))
        self.cleaned["stop_processing"] = bool(self.data.get("stop_processing"))

        conditions = []
        for i, row in enumerate(self.conditions):
            if not any(str(row.get(p) or "").strip() for p in CONDITION_PARTS):
                continue
            try:
                conditions.append(clean_condition(row))
            except RuleError as exc:
                self.add_error(f"cond-{i}-{exc.part}", str(exc))
        self.cleaned["conditions"] = conditions

        actions = []
        for i, row in enumerate(self.actions):
            if not str(row.get("type") or "").strip():
                if str(row.get("value") or "").strip():
                    self.add_error(f"act-{i}-type", "Choose what to do with this text.")
                continue
            try:
                action = action_from_choice(row["type"], row.get("value", ""), choices)
            except RuleError as exc:
                self.add_error(f"act-{i}-{exc.part}", str(exc))
                continue
            if "mailbox_id" in self.cleaned:
                problem = action_scope_error(action, self.cleaned["mailbox_id"])
                if problem:
                    self.add_error(f"act-{i}-type", problem)
            actions.append(action)
        if not actions and not any(k.startswith("act-") for k in self.errors):
            self.add_error("actions", "Add at least one action.")
        self.cleaned["actions"] = actions
        return self.is_valid

    def apply(self, rule) -> None:
        for name in ("name", "mailbox_id", "trigger", "match", "is_active", "stop_processing",
                     "conditions", "actions"):
            setattr(rule, name, self.cleaned[name])


def register(bp):
    def render_form(form: RuleForm, rule=None, status=200, result=None, tried=None):
        mailboxes = all_mailboxes()
        return render_template(
            "shared_inbox/rule_form.html", form=form, rule=rule, result=result, tried=tried,
            mailbox_choices=[("", "All mailboxes")] + [(str(mb.id), mb.name) for mb in mailboxes],
            trigger_choices=TRIGGERS, match_choices=MATCHES,
            field_choices=[("", "—")] + list(FIELDS.items()),
            op_choices=[("", "—")] + list(OPERATORS.items()),
            field_operators={FIELDS[f]: ", ".join(OPERATORS[o] for o in ops)
                             for f, ops in FIELD_OPERATORS.items()},
            action_options=[("", "—")] + action_choices(), dry_run_limit=DRY_RUN_TICKETS,
        ), status

    def rule_form(rule=None):
        require_admin()
        state = get_state()
        m = state.models
        if request.method == "GET":
            return render_form(RuleForm.blank() if rule is None else RuleForm.from_rule(rule), rule)
        form = RuleForm.from_request(request.form)
        do = request.form.get("do", "save")
        if do == "add_condition":
            form.add_rows(conditions=1)
            return render_form(form, rule)
        if do == "add_action":
            form.add_rows(actions=1)
            return render_form(form, rule)
        if not form.validate({mb.id for mb in all_mailboxes()}, action_choices()):
            return render_form(form, rule, 400)
        if do == "dry_run":
            trial = m.Rule()  # never added to the session: nothing is saved
            form.apply(trial)
            result = dry_run(trial)
            state.db.session.rollback()
            return render_form(form, rule, result=result, tried=trial)
        creating = rule is None
        if creating:
            rule = m.Rule(position=next_position(),
                          created_by_id=user_id(current_user._get_current_object()))
            state.db.session.add(rule)
        form.apply(rule)
        state.db.session.commit()
        flash(f"Rule {rule.name} {'added' if creating else 'saved'}.", "success")
        return redirect(url_for(f"{bp.name}.rules_settings"))

    @bp.route("/settings/rules/")
    def rules_settings():
        require_admin()
        mailboxes = {mb.id: mb for mb in all_mailboxes()}
        names = {i: mb.name for i, mb in mailboxes.items()}
        labels = dict(action_choices())
        rows = [{"rule": r,
                 "conditions": [describe_condition(c, names) for c in r.conditions or []],
                 "actions": [describe_action(a, labels) for a in r.actions or []]}
                for r in ordered_rules()]
        return render_template("shared_inbox/rules.html", rows=rows, mailboxes=mailboxes,
                               triggers=dict(TRIGGERS))

    @bp.route("/settings/rules/new", methods=["GET", "POST"])
    def rule_new():
        return rule_form(None)

    @bp.route("/settings/rules/<int:rule_id>/edit", methods=["GET", "POST"])
    def rule_edit(rule_id):
        require_admin()
        return rule_form(get_or_404("Rule", rule_id))

    @bp.route("/settings/rules/<int:rule_id>/move", methods=["POST"])
    def rule_move(rule_id):
        require_admin()
        state = get_state()
        rule = get_or_404("Rule", rule_id)
        direction = request.form.get("direction")
        if direction not in ("up", "down"):
            abort(400)
        if move_rule(rule, direction):
            state.db.session.commit()
            flash(f"Rule {rule.name} moved {direction}.", "success")
        return redirect(url_for(f"{bp.name}.rules_settings"))

    @bp.route("/settings/rules/<int:rule_id>/toggle", methods=["POST"])
    def rule_toggle(rule_id):
        require_admin()
        state = get_state()
        rule = get_or_404("Rule", rule_id)
        rule.is_active = not rule.is_active
        state.db.session.commit()
        flash(f"Rule {rule.name} {'enabled' if rule.is_active else 'disabled'}.", "success")
        return redirect(url_for(f"{bp.name}.rules_settings"))

    @bp.route("/settings/rules/<int:rule_id>/delete", methods=["POST"])
    def rule_delete(rule_id):
        require_admin()
        state = get_state()
        rule = get_or_404("Rule", rule_id)
        name = rule.name
        state.db.session.delete(rule)
        state.db.session.commit()
        flash(f"Rule {name} deleted.", "success")
        return redirect(url_for(f"{bp.name}.rules_settings"))

    @bp.route("/settings/rules/availability/<int:member_id>", methods=["POST"])
    def rule_member_availability(member_id):
        """Mark a mailbox member away (skipped by round-robin) or available again."""
        require_admin()
        state = get_state()
        membership = state.db.session.get(state.models.MailboxMember, member_id)
        if membership is None:
            abort(404)
        membership.is_available = request.form.get("available") == "1"
        state.db.session.commit()
        name = state.extension.display_user(membership.user)["name"]
        flash(f"{name} {'gets' if membership.is_available else 'is skipped by'} round-robin "
              f"assignment in {membership.mailbox.name}.", "success")
        return redirect(url_for(f"{bp.name}.rules_settings") + "#si-availability")

    @bp.route("/settings/rules/<int:rule_id>/dry-run")
    def rule_dry_run(rule_id):
        """The saved rule against the last tickets; read-only, so a GET."""
        require_admin()
        rule = get_or_404("Rule", rule_id)
        return render_template("shared_inbox/rule_dry_run.html", rule=rule,
                               result=dry_run(rule), dry_run_limit=DRY_RUN_TICKETS)
