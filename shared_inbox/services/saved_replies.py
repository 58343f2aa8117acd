"""Saved replies: canned answers with placeholders, global or for one mailbox.

Bodies are small Jinja templates rendered in a :class:`~jinja2.sandbox.SandboxedEnvironment`
over plain dictionaries (never database objects). On top of the sandbox only a small part of
the language is accepted: placeholders, a few string filters and ``{% if %}``. Loops, macros,
assignments, calls and arithmetic are refused, so a body can neither reach Python internals
nor keep a worker busy (``range`` is also capped by the sandbox at ``MAX_RANGE``).
A body that does not pass is reported when saved, and at render time falls back to the raw
text: rendering never raises.
"""
from __future__ import annotations

import sqlalchemy as sa
from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from ..extension import get_state

MAX_BODY_LENGTH = 20000
MAX_OUTPUT_LENGTH = 100000

ALLOWED_FILTERS = frozenset({
    "default", "d", "upper", "lower", "title", "capitalize", "trim", "truncate", "first",
    "last", "length", "string",
})
ALLOWED_TESTS = frozenset({"defined", "undefined", "none", "string", "eq", "ne", "equalto"})
ALLOWED_NODES = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Const, nodes.Name, nodes.Getattr,
    nodes.Getitem, nodes.Slice, nodes.Filter, nodes.Test, nodes.If, nodes.CondExpr, nodes.And,
    nodes.Or, nodes.Not, nodes.Compare, nodes.Operand, nodes.Concat, nodes.Keyword,
)

PLACEHOLDERS = (
    "customer.first_name", "customer.name", "customer.email", "agent.name", "agent.email",
    "ticket.number", "ticket.subject", "mailbox.name", "mailbox.email",
)


class LenientUndefined(ChainableUndefined):
    """Unknown names render empty; what the sandbox refused still raises SecurityError."""

    __slots__ = ()

    def _refused(self) -> bool:
        return self._undefined_exception is SecurityError

    def __str__(self) -> str:
        if self._refused():
            self._fail_with_undefined_error()
        return super().__str__()

    def __iter__(self):
        if self._refused():
            self._fail_with_undefined_error()
        return super().__iter__()

    def __bool__(self) -> bool:
        if self._refused():
            self._fail_with_undefined_error()
        return super().__bool__()

    def __getattr__(self, name):
        if name[:2] != "__" and self._refused():
            self._fail_with_undefined_error()
        return super().__getattr__(name)


_env = SandboxedEnvironment(
    autoescape=False, undefined=LenientUndefined, keep_trailing_newline=True)


class SavedReplyTemplateError(ValueError):
    """The body cannot be used as a template (message shown beside the field)."""


def check_body(body: str):
    """Parse and vet a body; returns the compiled template or raises SavedReplyTemplateError."""
    if len(body) > MAX_BODY_LENGTH:
        raise SavedReplyTemplateError(
            f"A saved reply can be at most {MAX_BODY_LENGTH} characters long.")
    try:
        tree = _env.parse(body)
    except TemplateSyntaxError as exc:
        raise SavedReplyTemplateError(
            f"Placeholder error on line {exc.lineno}: {exc.message}.") from None
    for node in tree.find_all(nodes.Node):
        if not isinstance(node, ALLOWED_NODES):
            raise SavedReplyTemplateError(
                "Only placeholders like {{ customer.first_name }} and {% if %} blocks can be "
                f"used (not {type(node).__name__.lower()}).")
        if isinstance(node, nodes.Name) and node.name.startswith("_"):
            raise SavedReplyTemplateError("Placeholder names cannot start with _.")
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            raise SavedReplyTemplateError("Placeholder names cannot start with _.")
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) \
                and isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
            raise SavedReplyTemplateError("Placeholder names cannot start with _.")
        if isinstance(node, nodes.Filter) and node.name not in ALLOWED_FILTERS:
            raise SavedReplyTemplateError(f"The filter {node.name!r} cannot be used here.")
        if isinstance(node, nodes.Test) and node.name not in ALLOWED_TESTS:
            raise SavedReplyTemplateError(f"The test {node.name!r} cannot be used here.")
    try:
        return _env.from_string(tree)
    except Exception as exc:  # noqa: BLE001 - any compile problem is the user's template
        raise SavedReplyTemplateError(f"Placeholder error: {exc}.") from None


def template_error(body: str) -> str | None:
    """The message for the body field, or None when the body is fine."""
    try:
        template = check_body(body)
        template.render(placeholder_context())
    except SavedReplyTemplateError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. SecurityError from the sandbox
        return f"Placeholder error: {exc}."
    return None


def render_body(body: str, context: dict) -> str:
    """The body with its placeholders filled; the raw body when it cannot be rendered."""
    try:
        out = check_body(body or "").render(context)
    except Exception:  # noqa: BLE001 - never break the ticket page over a canned reply
        return body or ""
    return out if len(out) <= MAX_OUTPUT_LENGTH else (body or "")


def placeholder_context(ticket=None, agent=None) -> dict:
    """Plain values for the placeholders (empty strings when there is no ticket)."""
    state = get_state()
    customer = ticket.customer if ticket is not None else None
    mailbox = ticket.mailbox if ticket is not None else None
    agent_info = state.extension.display_user(agent) if agent is not None else {}
    return {
        "customer": {
            "name": (customer.name or "") if customer else "",
            "first_name": customer.first_name if customer else "",
            "email": customer.email if customer else "",
        },
        "agent": {"name": agent_info.get("name") or "", "email": agent_info.get("email") or ""},
        "ticket": {"number": ticket.number if ticket is not None else "",
                   "subject": ticket.subject if ticket is not None else "",
                   "id": ticket.id if ticket is not None else ""},
        "mailbox": {"name": mailbox.name if mailbox else "",
                    "email": mailbox.email_address if mailbox else "",
                    "from_name": (mailbox.from_name or "") if mailbox else ""},
    }


def saved_replies_for(mailbox_id: int, q: str | None = None) -> list:
    """The saved replies usable in a mailbox (global + its own), optionally filtered by q."""
    state = get_state()
    m = state.models
    query = sa.select(m.SavedReply).where(
        sa.or_(m.SavedReply.mailbox_id.is_(None), m.SavedReply.mailbox_id == mailbox_id))
    q = (q or "").strip().lower()
    if q:
        query = query.where(sa.or_(
            sa.func.lower(m.SavedReply.title).contains(q, autoescape=True),
            sa.func.lower(m.SavedReply.body).contains(q, autoescape=True)))
    return list(state.db.session.scalars(
        query.order_by(sa.func.lower(m.SavedReply.title), m.SavedReply.id)))


def rendered_saved_replies(ticket, agent, q: str | None = None) -> list[dict]:
    """Saved replies for the ticket's mailbox, each rendered for this ticket and agent."""
    context = placeholder_context(ticket, agent)
    return [
        {"id": r.id, "title": r.title, "scope": "global" if r.mailbox_id is None else "mailbox",
         "text": render_body(r.body, context)}
        for r in saved_replies_for(ticket.mailbox_id, q)
    ]


def all_saved_replies() -> list:
    state = get_state()
    m = state.models
    return list(state.db.session.scalars(
        sa.select(m.SavedReply).order_by(m.SavedReply.mailbox_id.is_not(None),
                                         sa.func.lower(m.SavedReply.title), m.SavedReply.id)))
