"""Customer satisfaction: the "How did we do?" links in the closing email, and their answers.

When enabled (``SHARED_INBOX_SATISFACTION``: True for every mailbox, or a list of mailbox
addresses), "reply and close" adds three links (Great / Okay / Not good) to the reply. Each
carries a token signed with the app's ``SECRET_KEY`` (itsdangerous) naming the ticket and
the closing reply; it expires after ``SHARED_INBOX_SATISFACTION_LINK_DAYS``. A ticket has at
most one rating: using a link again, or another of the three, updates it.
"""
from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import current_app, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.routing import BuildError

from ..config import cv
from ..extension import get_state
from ..models import utcnow
from .reports import RATING_LABELS, RATINGS
from .tickets import record_activity

log = logging.getLogger("shared_inbox.satisfaction")

SALT = "shared_inbox.satisfaction"
MAX_COMMENT = 5000


class RatingLinkError(ValueError):
    """A rating link that cannot be used; ``expired`` tells the two cases apart."""

    def __init__(self, message: str, *, expired: bool = False):
        super().__init__(message)
        self.expired = expired


def enabled_for(mailbox) -> bool:
    """Does a closing reply from ``mailbox`` ask for a rating? The mailbox's own choice
    (settings) if it made one, else ``SHARED_INBOX_SATISFACTION``."""
    choice = getattr(mailbox, "ask_for_rating", None)
    if choice is not None:
        return bool(choice)
    setting = cv("SATISFACTION")
    if isinstance(setting, (list, tuple, set, frozenset)):
        return mailbox is not None and mailbox.email_address.lower() in \
            {a.lower() for a in setting}
    return bool(setting)


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=SALT)


def make_token(ticket, message=None) -> str:
    return _serializer().dumps({"t": ticket.id, "m": message.id if message is not None else None})


def read_token(token: str, *, now=None):
    """The ticket (and closing-message id) a token names; raises RatingLinkError."""
    max_age = int(cv("SATISFACTION_LINK_DAYS")) * 86400
    try:
        data = _serializer().loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise RatingLinkError("This rating link has expired.", expired=True) from exc
    except BadSignature as exc:
        raise RatingLinkError("This rating link is not valid.") from exc
    state = get_state()
    ticket_id = data.get("t") if isinstance(data, dict) else None
    ticket = state.db.session.get(state.models.Ticket, ticket_id) \
        if isinstance(ticket_id, int) else None
    if ticket is None:
        raise RatingLinkError("This rating link is not valid.")
    message_id = data.get("m")
    return ticket, message_id if isinstance(message_id, int) else None


def rating_links(ticket, message) -> dict[str, str] | None:
    """{rating: absolute URL}, or None when the public pages cannot be linked to (no
    request and no ``SERVER_NAME``, or the blueprint is not registered)."""
    from ..views.public import public_endpoint

    token = make_token(ticket, message)
    try:
        return {r: url_for(public_endpoint("rate"), token=token, rating=r, _external=True)
                for r in RATINGS}
    except (RuntimeError, BuildError):
        log.warning("satisfaction links left out of the reply on ticket %s: no URL to the "
                    "public pages (set SERVER_NAME to send them from a worker)", ticket.id)
        return None


def rating_request_text(ticket, message) -> str:
    """The paragraph added to a closing reply ("" when disabled or not linkable)."""
    if not enabled_for(ticket.mailbox):
        return ""
    links = rating_links(ticket, message)
    if not links:
        return ""
    lines = ["How did we do? One click tells us:"]
    lines += [f"{RATING_LABELS[r]}: {links[r]}" for r in RATINGS]
    return "\n".join(lines)


def record_rating(ticket, rating: str, *, message_id=None, comment: str | None = None,
                  now=None):
    """Create or update the ticket's rating; returns the row. The caller commits."""
    if rating not in RATINGS:
        raise ValueError(f"unknown rating {rating!r}")
    state = get_state()
    R = state.models.SatisfactionRating
    session = state.db.session
    now = now or utcnow()
    row = session.scalar(sa.select(R).where(R.ticket_id == ticket.id))
    if row is None:
        try:
            with session.begin_nested():
                row = R(ticket_id=ticket.id, message_id=message_id, rating=rating,
                        comment=(comment or "")[:MAX_COMMENT], created_at=now, updated_at=now)
                session.add(row)
            record_activity(ticket, "rated", None, rating=rating)
            return row
        except sa.exc.IntegrityError:  # the same link clicked twice at once
            row = session.scalar(sa.select(R).where(R.ticket_id == ticket.id))
    if row.rating != rating:
        record_activity(ticket, "rated", None, rating=rating, previous=row.rating)
        row.rating = rating
    if comment is not None and comment != row.comment:
        row.comment = comment[:MAX_COMMENT]
        record_activity(ticket, "rating_comment", None)
    if message_id is not None:
        row.message_id = message_id
    row.updated_at = now
    return row
