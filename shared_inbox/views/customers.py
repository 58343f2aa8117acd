"""A customer's profile (their conversations, name and notes) and the sidebar context panels.

An agent sees a customer only through the mailboxes they may see: the profile lists only
those conversations, and a customer with none of them answers 404 (like a ticket would).
"""
from __future__ import annotations

from typing import ClassVar

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for

from ..access import is_admin, mailbox_filter
from ..extension import get_state
from ..forms import Form
from ..services.context import panels

#: Conversations listed on a profile (newest first).
TICKET_LIMIT = 200
NOTES_MAX = 10000


class CustomerForm(Form):
    defaults: ClassVar[dict[str, object]] = {"name": "", "notes": ""}

    @classmethod
    def from_customer(cls, customer) -> CustomerForm:
        return cls({"name": customer.name, "notes": customer.notes})

    @classmethod
    def from_request(cls, formdata) -> CustomerForm:
        return cls({name: formdata.get(name, "") for name in cls.defaults})

    def validate(self) -> bool:
        name = self.text("name", max_length=255, label="Name")
        if name is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
            self.add_error("name", "A name cannot contain line breaks or control characters "
                           "(it is used in the To: of replies).")
        # Notes keep their line breaks; only the outer whitespace goes.
        notes = str(self.data.get("notes") or "")
        if len(notes) > NOTES_MAX:
            self.add_error("notes", f"Notes can be at most {NOTES_MAX} characters long.")
        else:
            self.cleaned["notes"] = notes.strip()
        return self.is_valid

    def apply(self, customer) -> None:
        customer.name = self.cleaned["name"]
        customer.notes = self.cleaned["notes"]


def visible_tickets_query(customer):
    """The customer's tickets in mailboxes the current user may see, newest first."""
    m = get_state().models
    return (sa.select(m.Ticket)
            .where(m.Ticket.customer_id == customer.id, mailbox_filter(m.Ticket.mailbox_id))
            .order_by(m.Ticket.last_message_at.desc(), m.Ticket.id.desc()))


def _customer_or_404(customer_id: int):
    """The customer, if the user may see them: admins always, agents through a ticket."""
    state = get_state()
    m = state.models
    customer = state.db.session.get(m.Customer, customer_id)
    if customer is None:
        abort(404)
    if not is_admin():
        visible = state.db.session.scalar(
            sa.select(m.Ticket.id).where(m.Ticket.customer_id == customer.id,
                                         mailbox_filter(m.Ticket.mailbox_id)).limit(1))
        if visible is None:
            abort(404)
    return customer


def register(bp):
    @bp.context_processor
    def _customer_context_helpers():
        # ticket.html's sidebar include calls it; providers run only when it does.
        return {"si_customer_panels": panels}

    def render_profile(customer, form, status=200):
        state = get_state()
        m = state.models
        tickets = list(state.db.session.scalars(
            visible_tickets_query(customer).options(sa.orm.selectinload(m.Ticket.mailbox))
            .limit(TICKET_LIMIT)))
        total = state.db.session.scalar(
            sa.select(sa.func.count()).select_from(visible_tickets_query(customer)
                                                   .order_by(None).subquery()))
        return render_template("shared_inbox/customer.html", customer=customer, form=form,
                               tickets=tickets, total=total, limit=TICKET_LIMIT), status

    @bp.route("/customers/<int:customer_id>")
    def customer(customer_id):
        c = _customer_or_404(customer_id)
        return render_profile(c, CustomerForm.from_customer(c))

    @bp.route("/customers/<int:customer_id>", methods=["POST"])
    def customer_edit(customer_id):
        state = get_state()
        c = _customer_or_404(customer_id)
        form = CustomerForm.from_request(request.form)
        if not form.validate():
            return render_profile(c, form, 400)
        form.apply(c)
        state.db.session.commit()
        flash(f"Saved {c.display_name}.", "success")
        return redirect(url_for(f"{bp.name}.customer", customer_id=c.id))
