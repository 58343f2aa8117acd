"""Blinker signals for host integrations (Flask's own signal style).

Connect a receiver in the host app::

    from shared_inbox import signals

    @signals.ticket_created.connect_via(app)
    def tell_sales(app, ticket, message, **extra):
        ...

Every signal is sent with the Flask app as sender, *inside the transaction that makes the
change*: a receiver may add rows to ``db.session`` (they commit or roll back with the change)
but must not commit, and should queue slow work (HTTP calls) rather than do it inline. The
built-in outgoing webhooks work that way: they queue a delivery row that the worker sends.

Keyword arguments: ``ticket`` always; ``message`` for created / received / sent / note;
``actor`` (the agent, or None for automation) for assigned / status_changed / note_added;
``old`` and ``new`` for status_changed; ``assignee`` for assigned.
"""
from __future__ import annotations

from blinker import Namespace
from flask import current_app

_signals = Namespace()

#: A new ticket was opened by inbound mail or the web form.
ticket_created = _signals.signal("shared-inbox-ticket-created")
#: A customer message arrived (in a new or an existing ticket).
message_received = _signals.signal("shared-inbox-message-received")
#: The outbox delivered a reply to the customer (SMTP accepted it).
reply_sent = _signals.signal("shared-inbox-reply-sent")
#: An agent wrote an internal note.
note_added = _signals.signal("shared-inbox-note-added")
#: A ticket's assignee changed (``assignee`` None means unassigned).
ticket_assigned = _signals.signal("shared-inbox-ticket-assigned")
#: A ticket's status changed (``old`` -> ``new``).
status_changed = _signals.signal("shared-inbox-status-changed")

ALL = {
    "ticket.created": ticket_created,
    "message.received": message_received,
    "reply.sent": reply_sent,
    "note.added": note_added,
    "ticket.assigned": ticket_assigned,
    "ticket.status_changed": status_changed,
}


def send(signal, **kwargs) -> None:
    """Send ``signal`` from the current app (a no-op when nobody listens)."""
    if signal.receivers:
        signal.send(current_app._get_current_object(), **kwargs)
