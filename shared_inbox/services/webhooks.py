"""Outgoing webhooks: events as signed JSON POSTs to the endpoints an admin configured.

A receiver connected to every signal in :data:`shared_inbox.signals.ALL` queues one
``InboxWebhookDelivery`` row per active webhook that chose the event, *in the transaction of
the change* (a rolled-back change sends nothing). :func:`deliver_due` (the scheduler's
``webhooks`` job) POSTs due rows with ``urllib`` and claims each row first with a
conditional UPDATE, like the outbox, so two workers never send one row at the same time.
A 2xx answer is ``delivered`` (``skipped`` if the webhook was switched off meanwhile);
anything else (an error, a timeout, a redirect) is retried
after 1, 2, 4... minutes (at most an hour) and ``failed`` after
``SHARED_INBOX_WEBHOOK_MAX_ATTEMPTS`` attempts. Delivery is at-least-once: a receiver
should ignore a ``delivery_id`` it has already seen.

The body is signed with the webhook's secret: ``X-Shared-Inbox-Signature: sha256=<hex of
HMAC-SHA256(secret, body)>``. Payloads carry ids, subject, status, mailbox, customer email
and the ticket's URL; the text of an internal note only in ``note.added``. A top-level
``text`` makes a Slack incoming webhook show a readable line.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app, has_request_context, url_for

from .. import signals
from ..config import cv
from ..extension import EXTENSION_KEY, get_state
from ..models import utcnow

log = logging.getLogger("shared_inbox.webhooks")

SIGNATURE_HEADER = "X-Shared-Inbox-Signature"
PENDING = ("queued", "retry")
#: The event of the settings page's "send test" button (not a signal).
TEST_EVENT = "ping"
#: The event of the rule action "notify a webhook" (sent whatever events the webhook chose).
RULE_EVENT = "rule.matched"
#: How long a sender holds a claimed row before another worker may try it again.
LEASE_SECONDS = 300
#: Characters of message text carried in a payload.
TEXT_LIMIT = 2000
USER_AGENT = "shared-inbox-webhooks/1"


# --- payloads -------------------------------------------------------------------------------

def ticket_url(ticket) -> str:
    """Absolute URL of the ticket's page when it can be known (request, EXTERNAL_URL or
    SERVER_NAME), else its path."""
    endpoint = f"{get_state().blueprint_name}.ticket"
    if has_request_context():
        return url_for(endpoint, ticket_id=ticket.id, _external=True)
    base = cv("EXTERNAL_URL")
    app = current_app
    if base:
        parts = urlsplit(base)
        adapter = app.url_map.bind(parts.netloc, script_name=parts.path.rstrip("/") or "/",
                                   url_scheme=parts.scheme or "https")
        return adapter.build(endpoint, {"ticket_id": ticket.id}, force_external=True)
    if app.config.get("SERVER_NAME"):
        return url_for(endpoint, ticket_id=ticket.id, _external=True)
    return app.url_map.bind("localhost").build(endpoint, {"ticket_id": ticket.id})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def _user(user) -> dict | None:
    if user is None:
        return None
    from ..access import user_id

    info = get_state().extension.display_user(user)
    uid = user_id(user)
    return {"id": uid if isinstance(uid, (int, str)) else str(uid), "name": info.get("name"),
            "email": info.get("email")}


def ticket_payload(ticket) -> dict:
    """What every event says about its ticket: ids, subject, status, mailbox, customer, URL.

    Never message bodies (see :func:`event_payload` for the one place a text is added).
    """
    mailbox = ticket.mailbox
    customer = ticket.customer
    return {
        "id": ticket.id,
        "number": ticket.number,
        "subject": ticket.subject or "",
        "status": ticket.status,
        "priority": ticket.priority,
        "mailbox": {"id": mailbox.id, "name": mailbox.name, "email": mailbox.email_address}
        if mailbox is not None else None,
        "customer": {"email": customer.email, "name": customer.name}
        if customer is not None else None,
        "assignee": _user(ticket.assignee) if ticket.assignee_id is not None else None,
        "tags": [tag.name for tag in ticket.tags],
        "created_at": _iso(ticket.created_at),
        "url": ticket_url(ticket),
    }


def _message(message, *, with_text: bool) -> dict | None:
    if message is None:
        return None
    data = {"id": message.id, "kind": message.kind, "from_email": message.from_email,
            "subject": message.subject, "created_at": _iso(message.created_at)}
    if with_text:
        text = message.reply_text if (message.reply_text or "").strip() else message.body_text
        data["text"] = (text or "")[:TEXT_LIMIT]
    return data


def event_payload(event: str, ticket, **kwargs) -> dict:
    """The ``data`` of an event: the ticket, plus what the signal tells about the change."""
    data = {"ticket": ticket_payload(ticket)}
    message = kwargs.get("message")
    if message is not None:
        # An internal note's text only leaves with note.added (the admin chose that event);
        # customer mail and replies go out without bodies beyond the ticket's snippet.
        data["message"] = _message(message, with_text=event == "note.added")
    if "actor" in kwargs:
        data["actor"] = _user(kwargs.get("actor"))
    if event == "ticket.status_changed":
        data["old_status"] = kwargs.get("old")
        data["new_status"] = kwargs.get("new")
    if event == "ticket.assigned":
        data["assignee"] = _user(kwargs.get("assignee"))
    return data


SUMMARIES = {
    "ticket.created": "New ticket",
    "message.received": "Customer wrote",
    "reply.sent": "Reply sent",
    "note.added": "Note added",
    "ticket.assigned": "Ticket assigned",
    "ticket.status_changed": "Status changed",
    TEST_EVENT: "Test delivery",
    RULE_EVENT: "Rule matched",
}


def summary_text(event: str, data: dict) -> str:
    """One readable line (Slack shows ``text``)."""
    head = SUMMARIES.get(event, event)
    ticket = data.get("ticket")
    if ticket is None and {"number", "subject", "url"} <= data.keys():
        ticket = data  # a bare ticket_payload(...)
    if not ticket:
        return f"{head} from the shared inbox."
    who = (ticket.get("customer") or {}).get("email") or "unknown sender"
    line = (f"{head}: #{ticket.get('number', ticket.get('id'))} "
            f"{ticket.get('subject') or '(no subject)'} ({who})")
    if event == "ticket.status_changed":
        line += f" {data.get('old_status')} → {data.get('new_status')}"
    if event == "ticket.assigned":
        line += f" to {(data.get('assignee') or {}).get('name') or 'nobody'}"
    rule = data.get("rule") if event == RULE_EVENT else None
    if rule:
        name = rule.get("name") if isinstance(rule, dict) else rule
        line = line.replace(head, f"{head} ({name})", 1)
    return f"{line} {ticket.get('url') or ''}".rstrip()


# --- queueing -------------------------------------------------------------------------------

def queue_delivery(webhook, event: str, payload: dict):
    """Add a delivery of ``payload`` (the event's ``data``) to ``webhook``; no commit.

    The body is fixed now (retries send the same bytes): ``{"event", "delivery_id",
    "created_at", "text", "data"}``.
    """
    state = get_state()
    now = utcnow()
    body = {
        "event": event,
        "delivery_id": uuid.uuid4().hex,
        "created_at": _iso(now),
        "text": summary_text(event, payload),
        "data": payload,
    }
    delivery = state.models.WebhookDelivery(
        webhook=webhook, event=event[:40], payload=body, status="queued", attempts=0,
        created_at=now,
    )
    state.db.session.add(delivery)
    return delivery


def webhooks_for(event: str) -> list:
    state = get_state()
    m = state.models
    hooks = state.db.session.scalars(
        sa.select(m.Webhook).where(m.Webhook.is_active.is_(True)).order_by(m.Webhook.id))
    return [hook for hook in hooks if event in (hook.events or [])]


def _make_receiver(event: str):
    def receiver(sender, **kwargs):
        if EXTENSION_KEY not in getattr(sender, "extensions", {}):
            return
        hooks = webhooks_for(event)
        if not hooks:
            return
        ticket = kwargs.pop("ticket", None)
        if ticket is None:
            return
        payload = event_payload(event, ticket, **kwargs)
        for hook in hooks:
            queue_delivery(hook, event, payload)

    receiver.__name__ = f"queue_webhooks_{event.replace('.', '_')}"
    return receiver


_RECEIVERS = {event: _make_receiver(event) for event in signals.ALL}


def connect_signals() -> None:
    """Queue deliveries for every signal (idempotent; called by ``init_app``)."""
    for event, signal in signals.ALL.items():
        signal.connect(_RECEIVERS[event], weak=False)


# --- delivery -------------------------------------------------------------------------------

@dataclass
class DeliveryStats:
    delivered: int = 0
    retry: int = 0
    failed: int = 0
    skipped: int = 0
    errors: dict[int, str] = field(default_factory=dict)


def backoff(attempts: int) -> timedelta:
    """1, 2, 4... minutes after the 1st, 2nd, 3rd... failed attempt; at most an hour."""
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 3600))


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (in any language): compare in constant time."""
    return hmac.compare_digest(sign(secret, body), header or "")


def is_http_url(url: str) -> bool:
    parts = urlsplit(url or "")
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _due(model, now: datetime):
    return sa.or_(
        sa.and_(model.status.in_(PENDING),
                sa.or_(model.next_attempt_at.is_(None), model.next_attempt_at <= now)),
        sa.and_(model.status == "sending", model.next_attempt_at <= now),
    )


def claim(delivery_id: int, now: datetime) -> bool:
    """Take one delivery for sending; True only for the one worker whose UPDATE won."""
    state = get_state()
    model = state.models.WebhookDelivery
    result = state.db.session.execute(
        sa.update(model).where(model.id == delivery_id, _due(model, now))
        .values(status="sending", next_attempt_at=now + timedelta(seconds=LEASE_SECONDS),
                attempts=model.attempts + 1)
        .execution_options(synchronize_session=False))
    state.db.session.commit()
    return result.rowcount == 1


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new target: a POST is never re-sent elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: dict, timeout: float) -> int:
    """POST ``body``; the HTTP status code, or an exception (HTTPError carries its code)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with _opener.open(request, timeout=timeout) as response:
        response.read(65536)
        return response.status


def _send(delivery) -> tuple[int | None, str | None]:
    """``(status code, error)``; error None means delivered."""
    hook = delivery.webhook
    if not is_http_url(hook.url):
        return None, "only http:// and https:// URLs are delivered"
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Shared-Inbox-Event": delivery.event,
        "X-Shared-Inbox-Delivery": str(delivery.payload.get("delivery_id", delivery.id)),
    }
    secret = hook.secret
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    try:
        code = post(hook.url, body, headers, float(cv("WEBHOOK_TIMEOUT")))
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code} {exc.reason}"
    except Exception as exc:  # URLError, timeout, connection refused, TLS...
        reason = getattr(exc, "reason", None) or exc
        return None, f"{exc.__class__.__name__}: {reason}"
    if 200 <= code < 300:
        return code, None
    return code, f"HTTP {code}"


def deliver_due(now: datetime | None = None, *, only_ids=None, limit: int = 100) -> DeliveryStats:
    """POST every due delivery (oldest first); see the module docstring."""
    state = get_state()
    m = state.models
    session = state.db.session
    stats = DeliveryStats()
    query = (sa.select(m.WebhookDelivery.id).where(_due(m.WebhookDelivery, now or utcnow()))
             .order_by(m.WebhookDelivery.id).limit(limit))
    if only_ids is not None:
        query = query.where(m.WebhookDelivery.id.in_(list(only_ids)))
    ids = list(session.scalars(query))
    session.commit()
    for delivery_id in ids:
        if not claim(delivery_id, now or utcnow()):
            stats.skipped += 1
            continue
        delivery = session.get(m.WebhookDelivery, delivery_id)
        if delivery is None:  # its webhook was deleted meanwhile
            session.commit()
            continue
        if not delivery.webhook.is_active and delivery.event != TEST_EVENT:
            # Switched off after this was queued: the admin no longer wants it sent.
            delivery.status = "skipped"
            delivery.error = "the webhook was deactivated before this was sent"
            delivery.next_attempt_at = None
            session.commit()
            stats.skipped += 1
            continue
        try:
            code, error = _send(delivery)
        except Exception as exc:  # a bug: keep the row and retry it
            log.exception("webhook delivery %s failed", delivery_id)
            code, error = None, f"{exc.__class__.__name__}: {exc}"
        delivery.response_code = code
        if error is None:
            delivery.status = "delivered"
            delivery.delivered_at = utcnow()
            delivery.next_attempt_at = None
            delivery.error = None
            stats.delivered += 1
        else:
            delivery.error = error[:2000]
            if delivery.attempts >= cv("WEBHOOK_MAX_ATTEMPTS"):
                delivery.status = "failed"
                delivery.next_attempt_at = None
            else:
                delivery.status = "retry"
                delivery.next_attempt_at = (now or utcnow()) + backoff(delivery.attempts)
            setattr(stats, delivery.status, getattr(stats, delivery.status) + 1)
            stats.errors[delivery_id] = delivery.error
            log.warning("webhook %s delivery %s (%s): %s, attempt %s -> %s", delivery.webhook_id,
                        delivery_id, delivery.event, error, delivery.attempts, delivery.status)
        session.commit()
    return stats


def send_test(webhook):
    """Queue a ``ping`` for ``webhook`` and deliver it now; the delivery row (committed)."""
    state = get_state()
    delivery = queue_delivery(webhook, TEST_EVENT, {"webhook": {"id": webhook.id,
                                                                "name": webhook.name}})
    state.db.session.commit()
    deliver_due(only_ids=[delivery.id])
    state.db.session.refresh(delivery)
    return delivery


def retry_now(delivery) -> bool:
    """Make a failed or waiting delivery due at once (the settings page's "retry" button);
    a failed one gets its full number of attempts again. No commit."""
    if delivery.status not in ("retry", "failed"):
        return False
    if delivery.status == "failed":
        delivery.attempts = 0
    delivery.status = "retry"
    delivery.next_attempt_at = None
    return True


def recent_deliveries(webhook, limit: int = 20) -> list:
    state = get_state()
    m = state.models
    return list(state.db.session.scalars(
        sa.select(m.WebhookDelivery).where(m.WebhookDelivery.webhook_id == webhook.id)
        .order_by(m.WebhookDelivery.created_at.desc(), m.WebhookDelivery.id.desc())
        .limit(limit)))
