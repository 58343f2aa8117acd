"""Rules: conditions and actions run on new tickets and customer replies, in a set order.

A rule (``models.Rule``) applies to one mailbox or all, on a new ticket, a customer reply or
both; its conditions (all or any must hold) look at the customer's message and at the
customer-context values the host provides; its actions use the ordinary services (tags,
assignment, status...), so they leave the same activity rows an agent's would. Each rule
that matches writes one more activity ("rule VIP matched: tagged vip, assigned Ada").

Safety: conditions and actions are validated when saved (:func:`clean_condition`,
:func:`action_from_choice`) and read defensively when run; a "matches" pattern is checked
when saved and runs with a timeout (``regex`` package) or on capped text with risky
patterns refused (plain ``re``); each action runs in a savepoint, so one that fails (an
agent removed from the mailbox, a webhook deleted) is written to the activity and the other
actions and steps still run. Nothing here commits: :mod:`.automation` does.
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field

import sqlalchemy as sa

from ..config import cv
from ..extension import get_state
from .tickets import record_activity

try:  # the ``regex`` package can stop a pattern after a timeout; ``re`` cannot
    import regex as _regex
except ImportError:  # pragma: no cover - depends on the installation
    _regex = None

log = logging.getLogger("shared_inbox.rules")

TRIGGERS = (("new", "A new ticket"), ("reply", "A customer reply"),
            ("both", "A new ticket or a customer reply"))
MATCHES = (("all", "All conditions hold"), ("any", "Any condition holds"))
PRIORITIES = ("low", "normal", "high", "urgent")
RULE_STATUSES = ("open", "pending", "closed")

FIELDS = {
    "mailbox": "Mailbox",
    "from": "From address",
    "subject": "Subject",
    "body": "Body",
    "has_attachment": "Has an attachment",
    "is_reply": "Is a reply to an existing ticket",
    "customer": "Customer value",
}
OPERATORS = {
    "contains": "contains",
    "not_contains": "does not contain",
    "is": "is",
    "is_not": "is not",
    "domain_is": "domain is",
    "matches": "matches (regular expression)",
    "greater": "is greater than",
    "less": "is less than",
    "is_true": "is true / yes",
    "is_false": "is false / no",
}
FIELD_OPERATORS = {
    "mailbox": ("is", "is_not"),
    "from": ("is", "is_not", "domain_is", "contains", "not_contains", "matches"),
    "subject": ("contains", "not_contains", "is", "is_not", "matches"),
    "body": ("contains", "not_contains", "matches"),
    "has_attachment": ("is_true", "is_false"),
    "is_reply": ("is_true", "is_false"),
    "customer": ("is", "is_not", "greater", "less", "contains", "is_true", "is_false"),
}
NO_VALUE = ("is_true", "is_false")

MAX_PATTERN_LENGTH = 300
#: Without the ``regex`` package, "matches" looks at no more than this many characters.
PLAIN_RE_TEXT_LIMIT = 10_000
MAX_VALUE_LENGTH = 500
CONTEXT_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
DRY_RUN_TICKETS = 200
_FALSE_WORDS = {"", "0", "false", "no", "off", "none", "null"}
#: Nested quantifiers like (a+)+ or (a|aa)* can take exponential time in ``re``.
_RISKY = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]|\((?:[^()\\]|\\.)*\|"
                    r"(?:[^()\\]|\\.)*\)\s*[+*{]")


class RuleError(ValueError):
    """A condition or action cannot be saved; ``part`` names the input it is about."""

    def __init__(self, message: str, part: str = "value"):
        super().__init__(message)
        self.part = part


class RuleActionError(RuntimeError):
    """An action could not be carried out on this ticket (written to its activity)."""


# --- patterns ----------------------------------------------------------------------------

def check_pattern(pattern: str) -> None:
    """Raise RuleError when ``pattern`` cannot be used in a "matches" condition."""
    if not pattern:
        raise RuleError("Enter a regular expression.")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RuleError(f"A pattern can be at most {MAX_PATTERN_LENGTH} characters long.")
    try:
        _compiled(pattern)
    except Exception as exc:  # noqa: BLE001 - re.error / regex.error: the user's pattern
        raise RuleError(f"This is not a valid regular expression: {exc}.") from None
    if _regex is None and _RISKY.search(pattern):
        raise RuleError("Nested repetition like (a+)+ can take very long; simplify the "
                        "pattern.")


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str):
    if _regex is not None:
        return _regex.compile(pattern, _regex.IGNORECASE | _regex.VERSION0)
    return re.compile(pattern, re.IGNORECASE)


def pattern_search(pattern: str, text: str) -> bool | None:
    """Does ``pattern`` occur in ``text``? None when it cannot tell (bad pattern, timeout)."""
    try:
        compiled = _compiled(pattern)
    except Exception:  # noqa: BLE001 - a pattern saved before validation, or edited in SQL
        return None
    if _regex is not None:
        try:
            return compiled.search(text, timeout=cv("RULE_REGEX_TIMEOUT")) is not None
        except TimeoutError:
            log.warning("rule pattern %r timed out", pattern)
            return None
    if _RISKY.search(pattern):
        return None
    return compiled.search(text[:PLAIN_RE_TEXT_LIMIT]) is not None


# --- conditions --------------------------------------------------------------------------

def _mailbox_by_text(text: str):
    state = get_state()
    m = state.models
    text = text.strip()
    if text.isdigit():
        found = state.db.session.get(m.Mailbox, int(text))
        if found is not None:
            return found
    return state.db.session.scalar(sa.select(m.Mailbox).where(sa.or_(
        sa.func.lower(m.Mailbox.email_address) == text.lower(),
        sa.func.lower(m.Mailbox.name) == text.lower())).order_by(m.Mailbox.id).limit(1))


def clean_condition(raw: dict) -> dict:
    """The condition to store, from ``{"field", "op", "key", "value"}``; RuleError if wrong."""
    fld = str(raw.get("field") or "").strip()
    op = str(raw.get("op") or "").strip()
    value = str(raw.get("value") or "").strip()
    if fld not in FIELDS:
        raise RuleError("Choose what to look at.", "field")
    if op not in FIELD_OPERATORS[fld]:
        allowed = ", ".join(OPERATORS[o] for o in FIELD_OPERATORS[fld])
        raise RuleError(f"{FIELDS[fld]} can be compared with: {allowed}.", "op")
    out = {"field": fld, "op": op}
    if fld == "customer":
        key = str(raw.get("key") or "").strip()
        if not key:
            raise RuleError("Name the customer value, e.g. orders.count or vip.", "key")
        if not CONTEXT_KEY.fullmatch(key):
            raise RuleError("A value name has letters, digits and . _ : - only.", "key")
        out["key"] = key
    if op in NO_VALUE:
        return out
    if not value:
        raise RuleError("Enter a value to compare with.")
    if len(value) > MAX_VALUE_LENGTH:
        raise RuleError(f"A value can be at most {MAX_VALUE_LENGTH} characters long.")
    if op == "matches":
        check_pattern(value)
    elif op in ("greater", "less"):
        if _number(value) is None:
            raise RuleError("Enter a number, like 3 or 99.50.")
    elif fld == "mailbox":
        mailbox = _mailbox_by_text(value)
        if mailbox is None:
            raise RuleError("There is no mailbox with this name or address.")
        out["value"] = mailbox.id
        return out
    elif op == "domain_is":
        value = value.lstrip("@").lower()
        if not value or "@" in value or " " in value:
            raise RuleError("Enter a domain like example.com.")
    out["value"] = value
    return out


def describe_condition(cond: dict, mailbox_names: dict | None = None) -> str:
    """One line for people: 'subject contains "refund"'."""
    fld = cond.get("field")
    label = FIELDS.get(fld, str(fld)).lower()
    if fld == "customer":
        label = f"customer {cond.get('key', '')}"
    op = OPERATORS.get(cond.get("op"), str(cond.get("op")))
    if cond.get("op") in NO_VALUE:
        return f"{label} {op.split(' /')[0]}" if fld == "customer" else (
            label if cond.get("op") == "is_true" else f"not: {label}")
    value = cond.get("value")
    if fld == "mailbox":
        value = (mailbox_names or {}).get(value, f"mailbox {value}")
    return f'{label} {op} "{value}"'


def _number(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    if isinstance(value, (list, tuple, dict, set)):
        return bool(value)
    return bool(value)


def _same(actual, wanted: str) -> bool:
    if isinstance(actual, bool):
        return _truthy(wanted) == actual
    a, b = _number(actual), _number(wanted)
    if a is not None and b is not None:
        return a == b
    return str(actual).strip().casefold() == wanted.strip().casefold()


@dataclass
class Facts:
    """What conditions look at for one customer message."""

    mailbox_id: int
    from_email: str
    subject: str
    body: str
    has_attachment: bool
    is_reply: bool
    customer: object | None
    _context: dict | None = field(default=None, repr=False)
    context_cache: dict | None = field(default=None, repr=False)

    def context(self) -> dict:
        if self._context is None:
            cache = self.context_cache if self.context_cache is not None else {}
            key = getattr(self.customer, "id", None)
            if key not in cache:
                cache[key] = _context_values(self.customer)
            self._context = cache[key]
        return self._context


def _context_values(customer) -> dict:
    if customer is None:
        return {}
    try:
        from .context import context_values
    except ImportError:  # pragma: no cover - customer context not installed
        return {}
    return context_values(customer) or {}


def facts_for(message, ticket, *, is_reply: bool, has_attachment: bool | None = None,
              context_cache: dict | None = None) -> Facts:
    limit = cv("RULE_TEXT_LIMIT")
    if has_attachment is None:
        has_attachment = any(not a.is_inline for a in message.attachments)
    body = message.reply_text if message.reply_text else message.body_text
    return Facts(
        mailbox_id=ticket.mailbox_id, from_email=(message.from_email or "").lower(),
        subject=(message.subject or ticket.subject or "")[:limit], body=(body or "")[:limit],
        has_attachment=bool(has_attachment), is_reply=is_reply, customer=ticket.customer,
        context_cache=context_cache,
    )


def _text_test(op: str, text: str, value: str) -> bool | None:
    folded = text.casefold()
    if op == "contains":
        return value.casefold() in folded
    if op == "not_contains":
        return value.casefold() not in folded
    if op == "is":
        return folded.strip() == value.casefold().strip()
    if op == "is_not":
        return folded.strip() != value.casefold().strip()
    if op == "matches":
        return pattern_search(value, text)
    return None


def condition_holds(cond: dict, facts: Facts) -> bool:
    """Does one stored condition hold? Unknown or unreadable conditions do not."""
    if not isinstance(cond, dict):
        return False
    fld, op, value = cond.get("field"), cond.get("op"), cond.get("value")
    if fld == "has_attachment" or fld == "is_reply":
        actual = facts.has_attachment if fld == "has_attachment" else facts.is_reply
        return actual if op == "is_true" else (not actual if op == "is_false" else False)
    if fld == "mailbox":
        if op == "is":
            return facts.mailbox_id == value
        return facts.mailbox_id != value if op == "is_not" else False
    if fld == "customer":
        return _customer_test(op, facts.context().get(cond.get("key")), value)
    if fld in ("from", "subject", "body"):
        text = {"from": facts.from_email, "subject": facts.subject, "body": facts.body}[fld]
        if op == "domain_is":
            return text.rpartition("@")[2] == str(value or "").lower()
        return bool(_text_test(op, text, str(value or "")))
    return False


def _customer_test(op: str, actual, value) -> bool:
    if op == "is_true":
        return _truthy(actual)
    if op == "is_false":
        return not _truthy(actual)
    if actual is None:
        return op == "is_not"
    value = str(value or "")
    if op == "is":
        return _same(actual, value)
    if op == "is_not":
        return not _same(actual, value)
    if op in ("greater", "less"):
        a, b = _number(actual), _number(value)
        if a is None or b is None:
            return False
        return a > b if op == "greater" else a < b
    if op == "contains":
        if isinstance(actual, (list, tuple, set)):
            return any(_same(item, value) for item in actual)
        return value.casefold() in str(actual).casefold()
    return False


def evaluate(rule, facts: Facts, mailbox_names: dict | None = None) -> tuple[bool, list[str]]:
    """(matched?, the conditions that held, described). No condition: every message."""
    conditions = rule.conditions if isinstance(rule.conditions, list) else []
    if not conditions:
        return True, []
    held = [c for c in conditions if condition_holds(c, facts)]
    matched = bool(held) if rule.match == "any" else len(held) == len(conditions)
    if not matched:
        return False, []
    if mailbox_names is None and any(c.get("field") == "mailbox" for c in held):
        mailbox_names = _mailbox_names()
    return True, [describe_condition(c, mailbox_names) for c in held]


def _mailbox_names() -> dict:
    state = get_state()
    m = state.models
    return dict(state.db.session.execute(sa.select(m.Mailbox.id, m.Mailbox.name)).all())


# --- actions -----------------------------------------------------------------------------

def _agents():
    from .admins import agent_users

    return agent_users()


def _webhooks() -> list:
    state = get_state()
    model = getattr(state.models, "Webhook", None)
    if model is None:
        return []
    return list(state.db.session.scalars(sa.select(model).order_by(model.id)))


def _webhook_label(hook) -> str:
    return getattr(hook, "name", None) or getattr(hook, "url", None) or f"webhook {hook.id}"


def action_choices() -> list[tuple[str, str]]:
    """The options of an action row: ``(choice, label)``; ids are part of the choice."""
    from ..access import user_id
    from .saved_replies import all_saved_replies

    display = get_state().extension.display_user
    out = [("add_tag", "Add the tag (type it)")]
    agents = sorted(_agents(), key=lambda u: (display(u)["name"] or "").lower())
    out += [(f"assign:{user_id(u)}", f"Assign to {display(u)['name']}") for u in agents]
    out.append(("assign_round_robin", "Assign round-robin among the mailbox's available agents"))
    out += [(f"set_status:{s}", f"Set status: {s}") for s in RULE_STATUSES]
    out += [(f"set_priority:{p}", f"Set priority: {p}") for p in PRIORITIES]
    out.append(("mark_spam", "Mark as spam (no auto-reply)"))
    out.append(("no_auto_reply", "Send no automatic reply"))
    out += [(f"send_saved_reply:{r.id}", f"Send the saved reply: {r.title}")
            for r in all_saved_replies()]
    out.append(("notify_email", "Notify by email (type addresses; also: assignee, admins)"))
    out += [(f"notify_webhook:{h.id}", f"Notify the webhook: {_webhook_label(h)}")
            for h in _webhooks()]
    out.append(("escalate", "Escalate (priority urgent, notify)"))
    return out


def _split_addresses(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"[,;\s]+", text or "") if p.strip()]


def action_from_choice(choice: str, text: str, choices: list[tuple[str, str]]) -> dict:
    """The action to store from a form row (option + typed text); RuleError if wrong."""
    from ..forms import parse_email
    from .tags import TagError, clean_tag_name

    choice = (choice or "").strip()
    if choice not in {c for c, _ in choices}:
        raise RuleError("Choose one of the options.", "type")
    kind, _, arg = choice.partition(":")
    text = (text or "").strip()
    if kind == "add_tag":
        try:
            return {"type": "add_tag", "tag": clean_tag_name(text)}
        except TagError as exc:
            raise RuleError(str(exc)) from None
    if kind == "notify_email":
        recipients = []
        for part in _split_addresses(text):
            if part.lower() in ("assignee", "admins"):
                recipients.append(part.lower())
                continue
            try:
                recipients.append(parse_email(part))
            except ValueError:
                raise RuleError(f"{part} is not an email address (or assignee, admins).") \
                    from None
        if not recipients:
            raise RuleError("Enter who to notify: addresses, assignee or admins.")
        if len(recipients) > 20:
            raise RuleError("Notify at most 20 recipients.")
        return {"type": "notify_email", "to": recipients}
    if kind == "assign":
        return {"type": "assign", "user_id": arg}
    if kind == "set_status":
        return {"type": "set_status", "status": arg}
    if kind == "set_priority":
        return {"type": "set_priority", "priority": arg}
    if kind == "send_saved_reply":
        return {"type": "send_saved_reply", "saved_reply_id": int(arg)}
    if kind == "notify_webhook":
        return {"type": "notify_webhook", "webhook_id": int(arg)}
    return {"type": kind}


def action_scope_error(action: dict, mailbox_id: int | None) -> str | None:
    """Why an action cannot work for a rule of ``mailbox_id`` (None: all mailboxes)."""
    from .tickets import find_user, may_see_mailbox

    state = get_state()
    m = state.models
    kind = action.get("type")
    if kind == "send_saved_reply":
        reply = state.db.session.get(m.SavedReply, action.get("saved_reply_id"))
        if reply is not None and reply.mailbox_id is not None \
                and reply.mailbox_id != mailbox_id:
            box = state.db.session.get(m.Mailbox, reply.mailbox_id)
            return (f"This saved reply is only for the mailbox {box.name}: choose that "
                    "mailbox for the rule, or a saved reply for all mailboxes.")
    if kind == "assign" and mailbox_id is not None:
        user = find_user(action.get("user_id"))
        mailbox = state.db.session.get(m.Mailbox, mailbox_id)
        if user is not None and mailbox is not None and not may_see_mailbox(user, mailbox):
            return (f"{_user_name(user)} is not a member of {mailbox.name}; add them as a "
                    "member first.")
    return None


def action_to_choice(action: dict) -> tuple[str, str]:
    """The form row (option, text) showing a stored action."""
    kind = action.get("type", "")
    arg = {"assign": "user_id", "set_status": "status", "set_priority": "priority",
           "send_saved_reply": "saved_reply_id", "notify_webhook": "webhook_id"}.get(kind)
    if arg:
        return f"{kind}:{action.get(arg)}", ""
    if kind == "add_tag":
        return kind, str(action.get("tag", ""))
    if kind == "notify_email":
        return kind, ", ".join(action.get("to") or [])
    return kind, ""


def describe_action(action: dict, labels: dict) -> str:
    choice, text = action_to_choice(action)
    if action.get("type") == "add_tag":
        return f'add the tag "{text}"'
    if action.get("type") == "notify_email":
        return f"notify {text} by email"
    label = labels.get(choice)
    if label is None:
        gone = {"assign": "assign to a user who is no longer an agent",
                "send_saved_reply": "send a saved reply that was deleted",
                "notify_webhook": "notify a webhook that was deleted"}
        return gone.get(action.get("type"), f"{choice} (unknown action)")
    return label[0].lower() + label[1:]


def _user_name(user) -> str:
    return get_state().extension.display_user(user)["name"]


def _do_add_tag(action, rule, event) -> str:
    from .tags import add_tag

    tag, _ = add_tag(event.ticket, action.get("tag", ""))
    return f"tagged {tag.name}"


def _do_assign(action, rule, event) -> str:
    from .tickets import assign, find_user

    user = find_user(action.get("user_id"))
    if user is None or not get_state().extension.is_agent(user):
        raise RuleActionError("the agent no longer exists")
    assign(event.ticket, user)
    return f"assigned {_user_name(user)}"


def round_robin_candidates(mailbox) -> list:
    """The mailbox's members who are agents and available, in a stable order (by name)."""
    from ..access import user_id
    from .tickets import assignable_agents

    state = get_state()
    m = state.models
    available = {str(uid) for uid in state.db.session.scalars(
        sa.select(m.MailboxMember.user_id).where(m.MailboxMember.mailbox_id == mailbox.id,
                                                 m.MailboxMember.is_available.is_(True)))}
    return [u for u in assignable_agents(mailbox) if str(user_id(u)) in available]


def _do_round_robin(action, rule, event) -> str:
    from ..access import user_id
    from .tickets import assign

    state = get_state()
    m = state.models
    # Lock the rule's row (PostgreSQL) so two workers hand tickets to different agents.
    locked = state.db.session.execute(
        sa.select(m.Rule).where(m.Rule.id == rule.id).with_for_update()
        .execution_options(populate_existing=True)).scalar_one_or_none()
    rule = locked or rule
    agents = round_robin_candidates(event.ticket.mailbox)
    if not agents:
        raise RuleActionError("no available agent in this mailbox")
    keys = [str(user_id(u)) for u in agents]
    start = keys.index(rule.round_robin_last) + 1 if rule.round_robin_last in keys else 0
    chosen = agents[start % len(agents)]
    rule.round_robin_last = str(user_id(chosen))
    assign(event.ticket, chosen)
    return f"assigned {_user_name(chosen)} (round-robin)"


def _do_set_status(action, rule, event) -> str:
    from .tickets import change_status

    status = action.get("status")
    if status not in RULE_STATUSES:
        raise RuleActionError(f"unknown status {status!r}")
    change_status(event.ticket, status)
    return f"status {status}"


def _do_set_priority(action, rule, event) -> str:
    priority = action.get("priority")
    if priority not in PRIORITIES:
        raise RuleActionError(f"unknown priority {priority!r}")
    try:  # the SLA's setter also re-evaluates which policy (and due times) apply
        from .sla import set_priority
    except ImportError:  # pragma: no cover - SLA not installed
        set_priority = None
    ticket = event.ticket
    if set_priority is not None:
        set_priority(ticket, priority)
    elif ticket.priority != priority:
        record_activity(ticket, "priority", None, old=ticket.priority, new=priority)
        ticket.priority = priority
    return f"priority {priority}"


def _do_mark_spam(action, rule, event) -> str:
    from .tickets import change_status

    change_status(event.ticket, "spam")
    event.suppress_auto_reply = True
    return "marked spam"


def _do_no_auto_reply(action, rule, event) -> str:
    event.suppress_auto_reply = True
    return "no automatic reply"


def _do_send_saved_reply(action, rule, event) -> str:
    from .autoreplies import send_automatic_reply
    from .saved_replies import placeholder_context, render_body

    state = get_state()
    ticket = event.ticket
    reply = state.db.session.get(state.models.SavedReply, action.get("saved_reply_id"))
    if reply is None or reply.mailbox_id not in (None, ticket.mailbox_id):
        raise RuleActionError("the saved reply no longer exists for this mailbox")
    if event.suppress_auto_reply:
        return f"saved reply {reply.title} not sent (no automatic reply to this message)"
    text = render_body(reply.body, placeholder_context(ticket, None))
    # No subject: the usual "Re: <subject> [#n]" of a reply in this thread.
    sent = send_automatic_reply(ticket, event.message, None, text,
                                reason=f"rule {rule.name}"[:40], now=event.now)
    if sent is None:
        return f"saved reply {reply.title} withheld (loop protection)"
    return f"sent the saved reply {reply.title}"


def _do_notify_email(action, rule, event) -> str:
    from .notify import admin_recipients, queue_notification

    ticket = event.ticket
    recipients = []
    for who in action.get("to") or []:
        if who == "assignee":
            if ticket.assignee is not None:
                recipients.append(ticket.assignee)
        elif who == "admins":
            recipients.extend(admin_recipients())
        else:
            recipients.append(who)
    customer = ticket.customer.email if ticket.customer is not None else "(unknown)"
    text = (f"The rule {rule.name} matched ticket #{ticket.number} in {ticket.mailbox.name}.\n\n"
            f"From: {customer}\nSubject: {ticket.subject}\n\n{ticket.snippet}\n")
    url = _ticket_url(ticket)
    if url.startswith(("http://", "https://")):  # a bare path means nothing in a mail
        text += f"\n{url}\n"
    row = queue_notification(recipients, f"[#{ticket.number}] Rule {rule.name}: "
                             f"{ticket.subject}", text, ticket=ticket, reason="rule")
    if row is None:
        return "nobody to notify"
    return "notified " + ", ".join(email for _, email in row.to)


def _ticket_url(ticket) -> str:
    try:
        from .webhooks import ticket_url

        return ticket_url(ticket)
    except Exception:  # noqa: BLE001 - no URL can be built here: the mail goes without it
        return ""


def _do_notify_webhook(action, rule, event) -> str:
    from . import webhooks

    state = get_state()
    model = getattr(state.models, "Webhook", None)
    hook = state.db.session.get(model, action.get("webhook_id")) if model is not None else None
    if hook is None:
        raise RuleActionError("the webhook no longer exists")
    if not getattr(hook, "is_active", True):
        raise RuleActionError(f"the webhook {_webhook_label(hook)} is disabled")
    # Shaped like the signals' events (``data.ticket``), plus the rule and the message that
    # triggered it (without its text), so one receiver reads every event the same way.
    payload = webhooks.event_payload(webhooks.RULE_EVENT, event.ticket, message=event.message)
    payload["rule"] = {"id": rule.id, "name": rule.name}
    webhooks.queue_delivery(hook, webhooks.RULE_EVENT, payload)
    return f"webhook {_webhook_label(hook)}"


def _do_escalate(action, rule, event) -> str:
    from .sla import escalate

    escalate(event.ticket, actor=None, now=event.now)
    return "escalated"


ACTIONS = {
    "add_tag": _do_add_tag,
    "assign": _do_assign,
    "assign_round_robin": _do_round_robin,
    "set_status": _do_set_status,
    "set_priority": _do_set_priority,
    "mark_spam": _do_mark_spam,
    "no_auto_reply": _do_no_auto_reply,
    "send_saved_reply": _do_send_saved_reply,
    "notify_email": _do_notify_email,
    "notify_webhook": _do_notify_webhook,
    "escalate": _do_escalate,
}


def run_actions(rule, event) -> list[str]:
    """Apply the rule's actions in order; what each did (or why it could not), for people."""
    session = get_state().db.session
    done = []
    for action in rule.actions if isinstance(rule.actions, list) else []:
        kind = action.get("type") if isinstance(action, dict) else None
        handler = ACTIONS.get(kind)
        if handler is None:
            done.append(f"skipped an unknown action {kind!r}")
            continue
        try:
            with session.begin_nested():
                done.append(handler(action, rule, event))
        except Exception as exc:  # noqa: BLE001 - one broken action must not stop the rest
            log.warning("rule %s: action %s failed on ticket %s", rule.id, kind,
                        event.ticket.id, exc_info=not isinstance(exc, RuleActionError))
            reason = str(exc) if isinstance(exc, (RuleActionError, ValueError)) \
                else f"{type(exc).__name__}: {exc}"
            done.append(f"could not {kind.replace('_', ' ')}: {reason}"[:300])
    return done


# --- running -----------------------------------------------------------------------------

def ordered_rules(*, mailbox_id: int | None = None, active_only: bool = False,
                  trigger: str | None = None) -> list:
    """Rules in the order they run (position, then id); filtered for one run if asked."""
    state = get_state()
    m = state.models
    query = sa.select(m.Rule).order_by(m.Rule.position, m.Rule.id)
    if mailbox_id is not None:
        query = query.where(sa.or_(m.Rule.mailbox_id.is_(None), m.Rule.mailbox_id == mailbox_id))
    if active_only:
        query = query.where(m.Rule.is_active.is_(True))
    if trigger is not None:
        query = query.where(m.Rule.trigger.in_((trigger, "both")))
    return list(state.db.session.scalars(query))


def on_inbound(event) -> None:
    """Automation step (see services.automation): apply the mailbox's rules to ``event``."""
    message = event.message
    if not event.is_new_ticket and (message.is_automated or message.is_bounce):
        # An out-of-office or a bounce joining a ticket is no customer reply (ingestion
        # does not reopen the ticket for it either); a new ticket from one still runs.
        return
    trigger = "new" if event.is_new_ticket else "reply"
    rules = ordered_rules(mailbox_id=event.mailbox.id, active_only=True, trigger=trigger)
    if not rules:
        return
    facts = facts_for(event.message, event.ticket, is_reply=not event.is_new_ticket)
    for rule in rules:
        matched, held = evaluate(rule, facts)
        if not matched:
            continue
        did = run_actions(rule, event)
        summary = f"rule {rule.name} matched: " + (", ".join(did) if did else "nothing to do")
        record_activity(event.ticket, "rule", None, rule_id=rule.id, rule=rule.name,
                        conditions=held, actions=did, summary=summary[:1000],
                        message=event.message.id)
        event.done.append(f"rule:{rule.name}")
        if rule.stop_processing:
            break


# --- settings helpers --------------------------------------------------------------------

def next_position() -> int:
    state = get_state()
    m = state.models
    return (state.db.session.scalar(sa.select(sa.func.max(m.Rule.position))) or 0) + 1


def move_rule(rule, direction: str) -> bool:
    """Swap the rule with its neighbour above ("up") or below ("down"); False at an end."""
    rules = ordered_rules()
    for index, r in enumerate(rules):  # normalise positions: 1, 2, 3...
        r.position = index + 1
    index = next(i for i, r in enumerate(rules) if r.id == rule.id)
    other = index - 1 if direction == "up" else index + 1
    if other < 0 or other >= len(rules):
        return False
    rules[index].position, rules[other].position = rules[other].position, rules[index].position
    return True


@dataclass
class DryRunMatch:
    ticket: object
    message: object
    conditions: list[str]


@dataclass
class DryRun:
    checked: int
    matches: list[DryRunMatch]


def dry_run(rule, limit: int = DRY_RUN_TICKETS) -> DryRun:
    """Which of the last ``limit`` tickets (of the rule's mailbox) would the rule match?

    Each ticket is judged by its first customer message, as a new ticket; nothing is
    applied. The rule does not need to be saved.
    """
    state = get_state()
    m = state.models
    session = state.db.session
    query = (sa.select(m.Ticket).where(m.Ticket.merged_into_id.is_(None))
             .order_by(m.Ticket.id.desc()).limit(limit))
    if rule.mailbox_id is not None:
        query = query.where(m.Ticket.mailbox_id == rule.mailbox_id)
    tickets = list(session.scalars(query))
    ids = [t.id for t in tickets]
    if not ids:
        return DryRun(0, [])
    first_ids = (sa.select(sa.func.min(m.Message.id)).where(
        m.Message.ticket_id.in_(ids), m.Message.kind == "inbound").group_by(m.Message.ticket_id))
    firsts = {msg.ticket_id: msg for msg in session.scalars(
        sa.select(m.Message).where(m.Message.id.in_(first_ids)))}
    with_files = set(session.scalars(sa.select(m.Attachment.message_id).where(
        m.Attachment.message_id.in_([msg.id for msg in firsts.values()]),
        m.Attachment.is_inline.is_(False))))
    cache: dict = {}
    names = _mailbox_names()
    matches = []
    for ticket in tickets:
        message = firsts.get(ticket.id)
        if message is None:
            continue
        facts = facts_for(message, ticket, is_reply=False,
                          has_attachment=message.id in with_files, context_cache=cache)
        matched, held = evaluate(rule, facts, names)
        if matched:
            matches.append(DryRunMatch(ticket, message, held))
    return DryRun(len(firsts), matches)
