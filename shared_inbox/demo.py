"""The demo on embedded defaults: a local mail server, three mailboxes, a dozen mails.

Used by ``flask inbox demo``. Mail is sent to the development SMTP server, which drops it
into the IMAP mailboxes that the inbox polls, so the demo runs the real path end to end.
"""
from __future__ import annotations

import os
import smtplib
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask

from .config import cv
from .extension import get_state
from .models import utcnow

DEMO_MAILBOX_NAMES = {"support": "Support", "sales": "Sales", "billing": "Billing"}


def ensure_mailboxes(server) -> dict:
    """One inbox mailbox per development mail account, pointed at the running server."""
    state = get_state()
    m = state.models
    session = state.db.session
    mailboxes = {}
    for address, password in server.users.items():
        mailbox = session.scalar(sa.select(m.Mailbox).where(m.Mailbox.email_address == address))
        local = address.split("@")[0]
        if mailbox is None:
            mailbox = m.Mailbox(
                email_address=address, name=DEMO_MAILBOX_NAMES.get(local, local.title()),
                from_name=f"Acme Outdoor {DEMO_MAILBOX_NAMES.get(local, local.title())}",
                import_since=utcnow() - timedelta(days=30),
            )
            session.add(mailbox)
        mailbox.imap_host = mailbox.smtp_host = "127.0.0.1"
        mailbox.imap_port, mailbox.smtp_port = server.imap_port, server.smtp_port
        mailbox.imap_security = mailbox.smtp_security = "plain"
        mailbox.imap_username = mailbox.smtp_username = address
        mailbox.imap_password = password
        mailboxes[local] = mailbox
    session.commit()
    return mailboxes


def give_agents_access(mailboxes: dict) -> None:
    """A mailbox nobody may see is useless in a demo: open it to every agent."""
    from .services.mailboxes import add_member

    state = get_state()
    ext = state.extension
    users = list(state.db.session.scalars(sa.select(state.user_model)))
    for mailbox in mailboxes.values():
        if mailbox.members:
            continue
        for user in users:
            if ext.is_agent(user) and not ext.is_admin(user):
                add_member(mailbox, user)
    state.db.session.commit()


def seed_mail(server) -> int:
    """Send the demo mails through SMTP once (the first time the demo starts)."""
    from .mail.demo_mail import demo_messages

    if any(server.message_count(address) for address in server.users):
        return 0
    sent = 0
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        for rcpt, raw in demo_messages():
            smtp.sendmail("customer@example.org", [rcpt], raw)
            sent += 1
    return sent


def start_demo(app: Flask):
    """Start the mail server, set up mailboxes and host seed data, poll once, then poll on."""
    from .mail.devserver import DevMailServer
    from .mail.imap import poll_all
    from .scheduler import start_in_background
    from .schema import init_db

    server = DevMailServer(
        imap_port=cv("DEV_IMAP_PORT", app), smtp_port=cv("DEV_SMTP_PORT", app),
        data_dir=os.path.join(app.instance_path, "devmail"),
    )
    server.start()
    with app.app_context():
        init_db()
        mailboxes = ensure_mailboxes(server)
        for seeder in get_state(app).extension.demo_seeders:
            seeder(mailboxes)
        give_agents_access(mailboxes)
        seed_mail(server)
        poll_all()
    start_in_background(app)
    return server
