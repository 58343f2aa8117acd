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
    "REGISTER_BLUEPRINT": True,
    "CLI_GROUP": "inbox",
    "TABLE_PREFIX": "inbox_",
    "BASE_TEMPLATE": "shared_inbox/base.html",
    "LOAD_CSS": True,
    "PAGE_SIZE": 50,
    "SCHEDULER": False,
    "POLL_INTERVAL": 60,
    "FETCH_BATCH_SIZE": 50,
    "MAX_MESSAGE_SIZE": 25 * 1024 * 1024,
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
}

DOCS: dict[str, str] = {
    "URL_PREFIX": "Where the dashboard is mounted.",
    "BLUEPRINT_NAME": "Name of the blueprint (and of the endpoints, e.g. `shared_inbox.index`).",
    "PUBLIC_URL_PREFIX": "Where the customer-facing pages (contact form, satisfaction rating) "
    "are mounted; they need no login.",
    "PUBLIC_BASE_TEMPLATE": "Template the customer-facing pages extend; point it at your "
    "site's public layout.",
    "REGISTER_BLUEPRINT": "Set to False to use models, CLI and polling without the dashboard.",
    "CLI_GROUP": "Name of the command group: `flask inbox ...`.",
    "TABLE_PREFIX": "Prefix of every table the extension owns. Choose it before the first `init-db`.",
    "BASE_TEMPLATE": "Template the dashboard pages extend; point it at your site's layout.",
    "LOAD_CSS": "Include the extension's own (scoped) stylesheet.",
    "PAGE_SIZE": "Tickets per page in the inbox list.",
    "SCHEDULER": "True: also poll in a background thread of the web process (opt-in; never "
    "under `app.testing`). Production runs `flask inbox run-worker` instead.",
    "POLL_INTERVAL": "Seconds between two polls of a mailbox.",
    "FETCH_BATCH_SIZE": "Messages fetched per IMAP FETCH command.",
    "MAX_MESSAGE_SIZE": "Messages larger than this (bytes) are recorded as a flagged placeholder.",
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
    "APPEND_TO_SENT": "Also file a copy of every sent reply in the mailbox's Sent folder over IMAP.",
    "SENT_FOLDER": "IMAP folder that receives copies of sent replies (with `APPEND_TO_SENT`).",
    "MAX_ATTACHMENT_SIZE": "Largest total size (bytes) of the files attached to one reply.",
    "ADMIN_EMAILS": "Addresses that receive admin mail (SLA breaches of unassigned tickets, the "
    "auto-reply circuit breaker, the weekly summary). Default: the users your `admin_loader` "
    "accepts.",
    "AUTOMATION_INTERVAL": "Seconds between two runs of the automation job (rules, auto-replies, "
    "SLA) for mail that arrived without a poll running it at once.",
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
