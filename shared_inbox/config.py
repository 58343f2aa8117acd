"""Configuration keys and their defaults.

Every key starts with ``SHARED_INBOX_``. ``init_app`` fills in the defaults with
``app.config.setdefault`` so the host can override any of them before calling it; the
README's configuration table is generated from :data:`DEFAULTS` and :data:`DOCS`.
"""
from __future__ import annotations

from flask import Flask, current_app

#: key (without the prefix) -> default value.  ``None`` means "computed at init_app".
DEFAULTS: dict[str, object] = {
    "URL_PREFIX": "/inbox",
    "BLUEPRINT_NAME": "shared_inbox",
    "PUBLIC_URL_PREFIX": "/help",
    "PUBLIC_BASE_TEMPLATE": "shared_inbox/public_base.html",
    "WEBFORM_MAILBOX": None,
    "WEBFORM_MAILBOXES": {},
    "WEBFORM_RATE_LIMIT": 5,
    "WEBFORM_MAX_TEXT": 20000,
    "WEBFORM_MAX_FILES": 5,
    "WEBFORM_MAX_UPLOAD_SIZE": 10 * 1024 * 1024,
    "AUTOREPLY_SENDER_LIMIT": 3,
    "AUTOREPLY_MAILBOX_LIMIT": 100,
    "REGISTER_BLUEPRINT": True,
    "CLI_GROUP": "inbox",
    "TABLE_PREFIX": "inbox_",
    "BASE_TEMPLATE": "shared_inbox/base.html",
    "LOAD_CSS": True,
    "PAGE_SIZE": 50,
    "PRESENCE_INTERVAL": 15,
    "PRESENCE_TIMEOUT": 45,
    "SCHEDULER": False,
    "POLL_INTERVAL": 60,
    "FETCH_BATCH_SIZE": 50,
    "MAX_MESSAGE_SIZE": 25 * 1024 * 1024,
    "LARGE_PART_SIZE": 64 * 1024,  # MIME parts streamed to storage (also spares the parser)
    "IMAP_TIMEOUT": 30,
    "LEASE_SECONDS": 300,
    "ATTACHMENT_STORAGE": "filesystem",
    "ATTACHMENT_DIR": None,
    "ENCRYPTION_KEYS": None,
    "SEND_MAIL": None,
    "DEV_IMAP_PORT": 1143,
    "DEV_SMTP_PORT": 1025,
    "OAUTH_CLIENTS": {},
    "OAUTH_REFRESH_MARGIN": 300,
    "SEND_MAX_ATTEMPTS": 8,
    "SEND_LEASE_SECONDS": 600,
    "SEND_INTERVAL": 15,
    "APPEND_TO_SENT": False,
    "SENT_FOLDER": "Sent",
    "MAX_ATTACHMENT_SIZE": 20 * 1024 * 1024,
    "ADMIN_EMAILS": [],
    "AUTOMATION_INTERVAL": 10,
    "SLA_SOON_MINUTES": 60,
    "TIMERS_INTERVAL": 60,
    "SATISFACTION": False,
    "SATISFACTION_LINK_DAYS": 30,
    "WEEKLY_SUMMARY": True,
    "RULE_REGEX_TIMEOUT": 0.25,
    "RULE_TEXT_LIMIT": 100_000,
    "EXTERNAL_URL": None,
    "CUSTOMER_CONTEXT_TIMEOUT": 2.0,
    "CUSTOMER_CONTEXT_CACHE_SECONDS": 60,
    "WEBHOOK_TIMEOUT": 10,
    "WEBHOOK_MAX_ATTEMPTS": 8,
    "WEBHOOK_INTERVAL": 15,
}

DOCS: dict[str, str] = {
    "URL_PREFIX": "Where the dashboard is mounted.",
    "BLUEPRINT_NAME": "Name of the blueprint (and of the endpoints, e.g. `shared_inbox.index`).",
    "PUBLIC_URL_PREFIX": "Where the customer-facing pages (contact form, satisfaction rating) "
    "are mounted; they need no login.",
    "PUBLIC_BASE_TEMPLATE": "Template the customer-facing pages extend; point it at your "
    "site's public layout.",
    "WEBFORM_MAILBOX": "Address (or id) of the mailbox the contact form files tickets in. "
    "Default: the first active mailbox.",
    "WEBFORM_MAILBOXES": "Further mailboxes the form may file into, by the slug in its URL: "
    "`{\"sales\": \"sales@example.com\"}` serves `/help/contact/sales`; other slugs are 404.",
    "WEBFORM_RATE_LIMIT": "Contact-form submissions accepted per IP address per hour (counted "
    "in the database, so across all web workers).",
    "WEBFORM_MAX_TEXT": "Longest message (characters) the contact form accepts.",
    "WEBFORM_MAX_FILES": "Most files one contact-form submission may attach (0: no attachments).",
    "WEBFORM_MAX_UPLOAD_SIZE": "Largest total size (bytes) of the files of one contact-form "
    "submission.",
    "AUTOREPLY_SENDER_LIMIT": "Automatic replies (acknowledgements, out-of-hours, form "
    "confirmations, rule replies) one address gets per hour; more are withheld.",
    "AUTOREPLY_MAILBOX_LIMIT": "Circuit breaker: automatic mails one mailbox sends per hour "
    "before it stops sending them and tells the admins.",
    "REGISTER_BLUEPRINT": "Set to False to use models, CLI and polling without the dashboard.",
    "CLI_GROUP": "Name of the command group: `flask inbox ...`.",
    "TABLE_PREFIX": "Prefix of every table the extension owns. Choose it before the first `init-db`.",
    "BASE_TEMPLATE": "Template the dashboard pages extend; point it at your site's layout.",
    "LOAD_CSS": "Include the extension's own (scoped) stylesheet.",
    "PAGE_SIZE": "Tickets per page in the inbox list.",
    "PRESENCE_INTERVAL": "Seconds between two heartbeats of an open ticket page (who is viewing "
    "or replying, new messages since the page was opened).",
    "PRESENCE_TIMEOUT": "Seconds after its last heartbeat an agent is no longer shown as "
    "viewing or replying to a ticket.",
    "SCHEDULER": "True: also poll in a background thread of the web process (opt-in; never "
    "under `app.testing`). Production runs `flask inbox run-worker` instead.",
    "POLL_INTERVAL": "Seconds between two polls of a mailbox.",
    "FETCH_BATCH_SIZE": "Messages fetched per IMAP FETCH command.",
    "MAX_MESSAGE_SIZE": "Messages larger than this (bytes) are recorded as a flagged placeholder.",
    "LARGE_PART_SIZE": "Base64 attachments whose encoded body is larger than this (bytes) "
    "are decoded straight into storage while ingesting, never held whole in memory. "
    "`0` turns it off.",
    "IMAP_TIMEOUT": "Socket timeout (seconds) for IMAP and SMTP connections.",
    "LEASE_SECONDS": "How long one poller holds a mailbox before another may take it over.",
    "ATTACHMENT_STORAGE": "`filesystem`, or an object with `put`, `get` and `delete`.",
    "ATTACHMENT_DIR": "Directory for raw messages and attachments. Default: "
    "`<instance_path>/shared_inbox`. Keep it outside any static folder.",
    "ENCRYPTION_KEYS": "List of Fernet keys (newest first) for mailbox passwords and tokens. "
    "Default: a key derived from `SECRET_KEY` (a warning is logged).",
    "SEND_MAIL": "Really send outgoing mail over SMTP. Default: True, False under `app.testing`.",
    "DEV_IMAP_PORT": "IMAP port of the development mail server started by `flask inbox demo`.",
    "DEV_SMTP_PORT": "SMTP port of the development mail server started by `flask inbox demo`.",
    "OAUTH_CLIENTS": "OAuth2 (XOAUTH2) app credentials per provider, e.g. "
    "`{\"google\": {\"client_id\": ..., \"client_secret\": ...}, \"microsoft\": "
    "{\"client_id\": ..., \"client_secret\": ..., \"tenant\": \"common\"}}`; an optional "
    "`token_url` per provider overrides its token endpoint.",
    "OAUTH_REFRESH_MARGIN": "Seconds before its expiry an OAuth2 access token is refreshed.",
    "SEND_MAX_ATTEMPTS": "Attempts to send an outgoing message (retried after 1, 2, 4... "
    "minutes, at most an hour apart) before it is marked failed.",
    "SEND_LEASE_SECONDS": "How long a sender holds an outgoing message; one left in `sending` "
    "longer (the sender crashed) is sent again.",
    "SEND_INTERVAL": "Seconds between two runs of the outbox delivery job.",
    "APPEND_TO_SENT": "Also file a copy of every sent reply in the mailbox's Sent folder over IMAP, for every mailbox (else per mailbox, in its settings).",
    "SENT_FOLDER": "IMAP folder that receives copies of sent replies (with `APPEND_TO_SENT` or a mailbox's own setting).",
    "MAX_ATTACHMENT_SIZE": "Largest total size (bytes) of the files attached to one reply.",
    "ADMIN_EMAILS": "Addresses that receive admin mail (SLA breaches of unassigned tickets, the "
    "auto-reply circuit breaker, the weekly summary). Default: the users your `admin_loader` "
    "accepts.",
    "AUTOMATION_INTERVAL": "Seconds between two runs of the automation job (rules, auto-replies, "
    "SLA) for mail that arrived without a poll running it at once.",
    "SLA_SOON_MINUTES": "A ticket whose next SLA target is due within this many minutes shows "
    "as \"breaching soon\" in the inbox.",
    "TIMERS_INTERVAL": "Seconds between two runs of the timers job (SLA breach mail, auto-close "
    "of pending tickets, snoozed tickets waking).",
    "SATISFACTION": "Ask customers to rate the answer (Great / Okay / Not good) in the reply "
    "that closes their ticket: True for every mailbox, or a list of mailbox addresses. The "
    "default for mailboxes whose settings form never chose (its checkbox wins).",
    "SATISFACTION_LINK_DAYS": "Days a rating link stays valid.",
    "WEEKLY_SUMMARY": "Mail the admins last week's figures every Monday (sent once per week "
    "however many workers run).",
    "RULE_REGEX_TIMEOUT": "Seconds a rule's \"matches\" pattern may run on one message before "
    "it counts as not matching (with the `regex` package installed).",
    "RULE_TEXT_LIMIT": "Characters of a subject or body that rule conditions look at (the "
    "start of longer mail).",
    "EXTERNAL_URL": "Base URL of the site (e.g. `https://shop.example`) for links to tickets "
    "made outside a request (webhooks sent by the worker). Default: `SERVER_NAME`, else paths.",
    "CUSTOMER_CONTEXT_TIMEOUT": "Seconds a customer-context provider may take before its panel "
    "shows \"unavailable\" (the ticket page never waits longer).",
    "CUSTOMER_CONTEXT_CACHE_SECONDS": "How long a customer-context provider's result is reused "
    "(0 turns the cache off); a failure is retried after at most 10 seconds.",
    "WEBHOOK_TIMEOUT": "Seconds an outgoing webhook request may take.",
    "WEBHOOK_MAX_ATTEMPTS": "Attempts to deliver a webhook event (retried after 1, 2, 4... "
    "minutes, at most an hour apart) before it is marked failed.",
    "WEBHOOK_INTERVAL": "Seconds between two runs of the webhook delivery job.",
}

PREFIX = "SHARED_INBOX_"


def apply_defaults(app: Flask) -> None:
    """Fill in every missing key; computed defaults depend on ``app.testing``."""
    for key, value in DEFAULTS.items():
        app.config.setdefault(PREFIX + key, value)
    cfg = app.config
    if cfg[PREFIX + "SEND_MAIL"] is None:
        cfg[PREFIX + "SEND_MAIL"] = not app.testing
    if cfg[PREFIX + "ATTACHMENT_DIR"] is None:
        import os

        cfg[PREFIX + "ATTACHMENT_DIR"] = os.path.join(app.instance_path, "shared_inbox")
    if not isinstance(cfg[PREFIX + "SCHEDULER"], bool):
        raise ValueError(f"{PREFIX}SCHEDULER must be True or False")


def cv(key: str, app: Flask | None = None):
    """Read one of our config values; an unknown key is a programming error."""
    if key not in DEFAULTS:
        raise KeyError(f"unknown shared_inbox config key {key!r}")
    return (app or current_app).config[PREFIX + key]
