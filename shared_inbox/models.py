"""The extension's tables, built on the host's own ``db.Model``.

The models are made by :func:`build_models` once per Flask-SQLAlchemy ``db`` because they
must live in the host's metadata (so the foreign keys to the host's user table resolve and
the host's ``db.session`` sees them), and because the user table's name and primary-key
type are only known when the host hands us its user model. Class names carry an ``Inbox``
prefix so they never collide with a host's own ``Ticket``, ``Message`` or ``Tag``.

The schema here must stay identical to the Alembic head in ``shared_inbox/migrations``;
``tests/test_schema.py`` compares the two.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from types import SimpleNamespace

import sqlalchemy as sa
from sqlalchemy.orm import relationship

STATUSES = ("open", "pending", "closed", "spam")
MESSAGE_KINDS = ("inbound", "outbound", "note")

#: names of every table built by build_models, in any app of this process (used by the
#: Flask-Migrate filter, which has no app at hand).
OWN_TABLE_NAMES: set[str] = set()
OWN_TABLE_PREFIXES: set[str] = set()

#: Built models live on the ``db`` object they belong to (an attribute of that name, a dict
#: by prefix): they go when the host's ``db`` goes (a module-level registry kept every app
#: built in a process alive, which a test run or an app factory called often would feel).
_BUILT_ATTR = "_shared_inbox_models"


def utcnow() -> datetime:
    """Naive UTC: what SQLite and PostgreSQL ``timestamp`` columns both round-trip."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def user_primary_key(user_model) -> sa.Column:
    pks = sa.inspect(user_model).primary_key
    if len(pks) != 1:
        raise TypeError("shared_inbox needs a user model with a single-column primary key")
    return pks[0]


def build_models(db, user_model, prefix: str = "inbox_") -> SimpleNamespace:
    """Create (once) and return the mapped classes for this ``db`` and table prefix."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", prefix):
        raise ValueError(f"table prefix {prefix!r} must be lower-case letters, digits, _")
    built = db.__dict__.setdefault(_BUILT_ATTR, {})
    if prefix in built:
        ns = built[prefix]
        if ns.user_model is not user_model:
            raise RuntimeError(
                "shared_inbox models for this db were already built with another user model"
            )
        return ns

    user_pk = user_primary_key(user_model)
    user_ref = f"{user_pk.table.fullname}.{user_pk.name}"

    def t(name: str) -> str:
        return prefix + name

    def user_fk(nullable: bool = True, ondelete: str = "SET NULL", index: bool = True):
        return sa.Column(
            user_pk.type, sa.ForeignKey(user_ref, ondelete=ondelete), nullable=nullable,
            index=index,
        )

    Model = db.Model

    class InboxMailbox(Model):
        """An IMAP/SMTP account whose mail becomes tickets (support@, sales@...)."""

        __tablename__ = t("mailbox")
        id = sa.Column(sa.Integer, primary_key=True)
        name = sa.Column(sa.String(120), nullable=False)
        email_address = sa.Column(sa.String(320), nullable=False, unique=True)
        from_name = sa.Column(sa.String(120), nullable=False, default="")
        signature = sa.Column(sa.Text, nullable=False, default="")
        is_active = sa.Column(sa.Boolean, nullable=False, default=True)
        # IMAP
        imap_host = sa.Column(sa.String(255), nullable=False, default="")
        imap_port = sa.Column(sa.Integer, nullable=False, default=993)
        imap_security = sa.Column(sa.String(10), nullable=False, default="ssl")
        imap_username = sa.Column(sa.String(320), nullable=False, default="")
        imap_folder = sa.Column(sa.String(255), nullable=False, default="INBOX")
        after_fetch = sa.Column(sa.String(10), nullable=False, default="leave")
        move_to_folder = sa.Column(sa.String(255), nullable=False, default="")
        # SMTP
        smtp_host = sa.Column(sa.String(255), nullable=False, default="")
        smtp_port = sa.Column(sa.Integer, nullable=False, default=587)
        smtp_security = sa.Column(sa.String(10), nullable=False, default="starttls")
        smtp_username = sa.Column(sa.String(320), nullable=False, default="")
        # Sent folder (si0013): file a copy of each reply over IMAP; per mailbox, because a
        # provider that files sent mail itself (Gmail) would get every reply twice.
        append_to_sent = sa.Column(sa.Boolean, nullable=False, default=False,
                                   server_default=sa.false())
        # Customer satisfaction (si0017): ask for a rating in the reply that closes a ticket.
        # None follows SHARED_INBOX_SATISFACTION; the mailbox settings form sets it.
        ask_for_rating = sa.Column(sa.Boolean, nullable=True)
        # Credentials, encrypted with crypto.SecretBox; never rendered back.
        auth_type = sa.Column(sa.String(20), nullable=False, default="password")
        imap_secret = sa.Column(sa.Text, nullable=True)
        smtp_secret = sa.Column(sa.Text, nullable=True)
        oauth_provider = sa.Column(sa.String(20), nullable=True)
        oauth_secret = sa.Column(sa.Text, nullable=True)
        # Import window and poll health
        import_since = sa.Column(sa.DateTime, nullable=True)
        last_polled_at = sa.Column(sa.DateTime, nullable=True)
        last_error = sa.Column(sa.Text, nullable=True)
        needs_reauth = sa.Column(sa.Boolean, nullable=False, default=False)
        # Back-off after failures: a broken mailbox is retried later, not every minute.
        failure_count = sa.Column(sa.Integer, nullable=False, default=0, server_default="0")
        next_poll_at = sa.Column(sa.DateTime, nullable=True)
        # Auto-replies (si0010): acknowledgement of a new ticket, out-of-hours reply, and
        # when the circuit breaker last stopped this mailbox's automatic mail.
        autoreply_ack_enabled = sa.Column(sa.Boolean, nullable=False, default=False,
                                          server_default=sa.false())
        autoreply_ack_subject = sa.Column(sa.String(998), nullable=False, default="",
                                          server_default="")
        autoreply_ack_text = sa.Column(sa.Text, nullable=False, default="", server_default="")
        autoreply_ooh_enabled = sa.Column(sa.Boolean, nullable=False, default=False,
                                          server_default=sa.false())
        autoreply_ooh_subject = sa.Column(sa.String(998), nullable=False, default="",
                                          server_default="")
        autoreply_ooh_text = sa.Column(sa.Text, nullable=False, default="", server_default="")
        autoreply_breaker_at = sa.Column(sa.DateTime, nullable=True)
        # Business hours and SLA (si0011, services/business_hours.py): the zone the hours are
        # in, the weekly hours as {"0": [["09:00", "17:00"]], ...} (NULL: always open), and
        # auto-close of pending tickets after N days without a customer reply (NULL: never).
        timezone = sa.Column(sa.String(64), nullable=False, default="UTC", server_default="UTC")
        business_hours = sa.Column(sa.JSON, nullable=True)
        auto_close_days = sa.Column(sa.Integer, nullable=True)
        auto_close_message = sa.Column(sa.Text, nullable=False, default="", server_default="")
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)

        members = relationship(
            "InboxMailboxMember", back_populates="mailbox", cascade="all, delete-orphan"
        )

        @property
        def imap_password(self) -> str | None:
            from .crypto import decrypt_secret

            return decrypt_secret(self.imap_secret)

        @imap_password.setter
        def imap_password(self, value: str | None) -> None:
            from .crypto import encrypt_secret

            self.imap_secret = encrypt_secret(value)

        @property
        def smtp_password(self) -> str | None:
            from .crypto import decrypt_secret

            return decrypt_secret(self.smtp_secret) if self.smtp_secret else self.imap_password

        @smtp_password.setter
        def smtp_password(self, value: str | None) -> None:
            from .crypto import encrypt_secret

            self.smtp_secret = encrypt_secret(value)

        def __repr__(self) -> str:
            return f"<InboxMailbox {self.email_address}>"

    class InboxMailboxMember(Model):
        """An agent allowed to see one mailbox (admins see all without a row)."""

        __tablename__ = t("mailbox_member")
        __table_args__ = (sa.UniqueConstraint("mailbox_id", "user_id"),)
        id = sa.Column(sa.Integer, primary_key=True)
        mailbox_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('mailbox')}.id", ondelete="CASCADE"),
            nullable=False, index=True,
        )
        user_id = user_fk(nullable=False, ondelete="CASCADE")
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        # Rules (si0009): round-robin assignment skips members marked unavailable.
        is_available = sa.Column(sa.Boolean, nullable=False, default=True,
                                 server_default=sa.true())
        mailbox = relationship(InboxMailbox, back_populates="members")
        user = relationship(user_model)

    class InboxCustomer(Model):
        """Someone who writes to us, found by address; named by their first mail, then agents."""

        __tablename__ = t("customer")
        id = sa.Column(sa.Integer, primary_key=True)
        email = sa.Column(sa.String(320), nullable=False, unique=True)
        name = sa.Column(sa.String(255), nullable=False, default="")
        notes = sa.Column(sa.Text, nullable=False, default="")
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        updated_at = sa.Column(sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow)

        @property
        def display_name(self) -> str:
            return self.name or self.email

        @property
        def first_name(self) -> str:
            return (self.name or self.email.split("@")[0]).split()[0]

    ticket_tags = sa.Table(
        t("ticket_tag"),
        Model.metadata,
        sa.Column("ticket_id", sa.Integer,
                  sa.ForeignKey(f"{t('ticket')}.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag_id", sa.Integer,
                  sa.ForeignKey(f"{t('tag')}.id", ondelete="CASCADE"), primary_key=True,
                  index=True),
    )

    class InboxTag(Model):
        __tablename__ = t("tag")
        id = sa.Column(sa.Integer, primary_key=True)
        name = sa.Column(sa.String(64), nullable=False, unique=True)
        color = sa.Column(sa.String(16), nullable=False, default="#6b7280")
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)

    class InboxTicket(Model):
        """One conversation with a customer, living in one mailbox."""

        __tablename__ = t("ticket")
        __table_args__ = (
            # The inbox folders: per mailbox / assignee / status, newest first.
            sa.Index(f"ix_{t('ticket')}_mailbox_status_last", "mailbox_id", "status",
                     "last_message_at"),
            sa.Index(f"ix_{t('ticket')}_assignee_status_last", "assignee_id", "status",
                     "last_message_at"),
            sa.Index(f"ix_{t('ticket')}_status_last", "status", "last_message_at"),
            # Covers the one grouped query counting every inbox folder (si0005).
            sa.Index(f"ix_{t('ticket')}_folder_counts", "status", "mailbox_id", "assignee_id",
                     "snoozed_until", "merged_into_id"),
            # "Waiting longest": the waiting half of the list walks this index (si0005).
            sa.Index(f"ix_{t('ticket')}_status_inbound", "status", "last_inbound_at", "id"),
            # The folder counts cache asks max(updated_at) on every page (si0005).
            sa.Index(f"ix_{t('ticket')}_updated_at", "updated_at"),
            # "Due soonest" sort and the SLA timers (si0011).
            sa.Index(f"ix_{t('ticket')}_status_sla_due", "status", "sla_due_at", "id"),
        )
        id = sa.Column(sa.Integer, primary_key=True)
        mailbox_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('mailbox')}.id", ondelete="CASCADE"), nullable=False
        )
        customer_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('customer')}.id", ondelete="SET NULL"),
            nullable=True, index=True,
        )
        subject = sa.Column(sa.String(998), nullable=False, default="")
        status = sa.Column(sa.String(10), nullable=False, default="open")
        priority = sa.Column(sa.String(10), nullable=False, default="normal")
        assignee_id = user_fk(index=False)
        snippet = sa.Column(sa.String(300), nullable=False, default="")
        message_count = sa.Column(sa.Integer, nullable=False, default=0)
        is_flagged = sa.Column(sa.Boolean, nullable=False, default=False)
        # Timestamps for the inbox order, reports and SLA.
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        updated_at = sa.Column(sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow)
        last_message_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        last_inbound_at = sa.Column(sa.DateTime, nullable=True)
        last_outbound_at = sa.Column(sa.DateTime, nullable=True)
        first_response_at = sa.Column(sa.DateTime, nullable=True)
        closed_at = sa.Column(sa.DateTime, nullable=True)
        snoozed_until = sa.Column(sa.DateTime, nullable=True)
        # Set when merged into another ticket (whose thread then holds the messages).
        merged_into_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('ticket')}.id", ondelete="SET NULL"), nullable=True)
        # SLA (si0011, services/sla.py): due times of the first reply and of the resolution,
        # the earliest one still unmet (the "due soonest" sort), the policy that set them,
        # and when each breach was notified (once per target).
        first_response_due_at = sa.Column(sa.DateTime, nullable=True)
        resolution_due_at = sa.Column(sa.DateTime, nullable=True)
        sla_due_at = sa.Column(sa.DateTime, nullable=True)
        sla_policy_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('sla_policy')}.id", ondelete="SET NULL"),
            nullable=True, index=True)
        first_response_breached_at = sa.Column(sa.DateTime, nullable=True)
        resolution_breached_at = sa.Column(sa.DateTime, nullable=True)
        # Reports (si0016, services/reports.py): first-response and resolution durations as
        # the reports count them, stored by a report for the next one. Used only while
        # report_basis matches the mailbox's schedule and the two copied timestamps still
        # equal first_response_at / closed_at (so hours changes and reopening invalidate).
        report_basis = sa.Column(sa.String(40), nullable=True)
        report_first_response_seconds = sa.Column(sa.Float, nullable=True)
        report_resolution_seconds = sa.Column(sa.Float, nullable=True)
        report_first_response_at = sa.Column(sa.DateTime, nullable=True)
        report_closed_at = sa.Column(sa.DateTime, nullable=True)

        mailbox = relationship(InboxMailbox)
        customer = relationship(InboxCustomer)
        assignee = relationship(user_model, foreign_keys=[assignee_id])
        tags = relationship(InboxTag, secondary=ticket_tags, order_by=InboxTag.name)
        messages = relationship(
            "InboxMessage", back_populates="ticket", order_by="InboxMessage.id",
            cascade="all, delete-orphan", passive_deletes=True,
        )

        @property
        def number(self) -> int:
            return self.id

        @property
        def is_waiting(self) -> bool:
            """The customer wrote last and we have not answered since."""
            return self.status == "open" and self.last_inbound_at is not None and (
                self.last_outbound_at is None or self.last_outbound_at < self.last_inbound_at
            )

    class InboxMessage(Model):
        """An inbound mail, an outbound reply, or an internal note."""

        __tablename__ = t("message")
        __table_args__ = (
            sa.Index(f"ix_{t('message')}_ticket_created", "ticket_id", "created_at"),
        )
        id = sa.Column(sa.Integer, primary_key=True)
        ticket_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('ticket')}.id", ondelete="CASCADE"), nullable=False
        )
        mailbox_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('mailbox')}.id", ondelete="SET NULL"),
            nullable=True, index=True,
        )
        kind = sa.Column(sa.String(10), nullable=False, default="inbound")
        author_id = user_fk()
        from_name = sa.Column(sa.String(255), nullable=False, default="")
        from_email = sa.Column(sa.String(320), nullable=False, default="")
        to = sa.Column(sa.JSON, nullable=False, default=list)
        cc = sa.Column(sa.JSON, nullable=False, default=list)
        subject = sa.Column(sa.String(998), nullable=False, default="")
        # Threading headers, stored without angle brackets.
        message_id = sa.Column(sa.String(998), nullable=True, index=True)
        in_reply_to = sa.Column(sa.Text, nullable=False, default="")
        references = sa.Column(sa.Text, nullable=False, default="")
        headers = sa.Column(sa.JSON, nullable=False, default=dict)
        # Content: full text, the newly written part, sanitized HTML.
        body_text = sa.Column(sa.Text, nullable=False, default="")
        reply_text = sa.Column(sa.Text, nullable=True)
        body_html = sa.Column(sa.Text, nullable=True)
        raw_key = sa.Column(sa.String(255), nullable=True)
        raw_size = sa.Column(sa.Integer, nullable=True)
        content_hash = sa.Column(sa.String(64), nullable=True, index=True)
        is_malformed = sa.Column(sa.Boolean, nullable=False, default=False)
        parse_error = sa.Column(sa.Text, nullable=True)
        # Automatic mail (RFC 3834 auto-replies, lists, bounces) is never answered by
        # automation; imported history never triggers it either.
        is_automated = sa.Column(sa.Boolean, nullable=False, default=False, server_default=sa.false())
        is_bounce = sa.Column(sa.Boolean, nullable=False, default=False, server_default=sa.false())
        is_imported = sa.Column(sa.Boolean, nullable=False, default=False, server_default=sa.false())
        thread_reason = sa.Column(sa.String(500), nullable=False, default="")
        # Automation (rules, auto-replies, SLA, signals) runs after the message is committed:
        # "pending" until services.automation.process_pending has run it (in its own
        # transaction, so a crash re-runs it and a bug cannot lose the mail); "skipped" for
        # imported history and anything that must never trigger automation.
        automation_state = sa.Column(sa.String(10), nullable=True, index=True)
        # Two-phase ingestion (si0018, services/accept.py): the poller commits a new mail
        # from its headers alone (threaded, in the inbox at once) with this flag set;
        # services/complete.py then parses the body, attachments and quotes and clears it.
        body_pending = sa.Column(sa.Boolean, nullable=False, default=False,
                                 server_default=sa.false())
        # Outgoing mail state (outbox).
        send_status = sa.Column(sa.String(10), nullable=True)
        send_error = sa.Column(sa.Text, nullable=True)
        send_attempts = sa.Column(sa.Integer, nullable=False, default=0)
        next_attempt_at = sa.Column(sa.DateTime, nullable=True)
        sent_at = sa.Column(sa.DateTime, nullable=True)
        date = sa.Column(sa.DateTime, nullable=True)
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)

        ticket = relationship(InboxTicket, back_populates="messages")
        author = relationship(user_model)
        attachments = relationship(
            "InboxAttachment", back_populates="message", order_by="InboxAttachment.id",
            cascade="all, delete-orphan", passive_deletes=True,
        )

        @property
        def reference_ids(self) -> list[str]:
            return self.references.split()

    class InboxAttachment(Model):
        """A file of a message; the bytes live in attachment storage, not in the row."""

        __tablename__ = t("attachment")
        id = sa.Column(sa.Integer, primary_key=True)
        message_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('message')}.id", ondelete="CASCADE"),
            nullable=False, index=True,
        )
        filename = sa.Column(sa.String(255), nullable=False)
        content_type = sa.Column(sa.String(255), nullable=False,
                                 default="application/octet-stream")
        size = sa.Column(sa.Integer, nullable=False, default=0)
        storage_key = sa.Column(sa.String(255), nullable=False)
        content_id = sa.Column(sa.String(255), nullable=True)
        is_inline = sa.Column(sa.Boolean, nullable=False, default=False)
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        message = relationship(InboxMessage, back_populates="attachments")

    class InboxSavedReply(Model):
        """A canned answer, global (mailbox_id NULL) or for one mailbox."""

        __tablename__ = t("saved_reply")
        id = sa.Column(sa.Integer, primary_key=True)
        mailbox_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('mailbox')}.id", ondelete="CASCADE"),
            nullable=True, index=True,
        )
        title = sa.Column(sa.String(200), nullable=False)
        body = sa.Column(sa.Text, nullable=False, default="")
        created_by_id = user_fk()
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        updated_at = sa.Column(sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    class InboxActivity(Model):
        """Audit log: who did what to which ticket, when."""

        __tablename__ = t("activity")
        __table_args__ = (
            sa.Index(f"ix_{t('activity')}_ticket_created", "ticket_id", "created_at"),
        )
        id = sa.Column(sa.Integer, primary_key=True)
        ticket_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('ticket')}.id", ondelete="CASCADE"), nullable=False
        )
        actor_id = user_fk()
        action = sa.Column(sa.String(40), nullable=False)
        detail = sa.Column(sa.JSON, nullable=False, default=dict)
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        actor = relationship(user_model)

    class InboxTicketRead(Model):
        """When an agent last read a ticket: the inbox shows what is unread for them."""

        __tablename__ = t("ticket_read")
        __table_args__ = (sa.UniqueConstraint("ticket_id", "user_id"),)
        id = sa.Column(sa.Integer, primary_key=True)
        ticket_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('ticket')}.id", ondelete="CASCADE"), nullable=False)
        user_id = user_fk(nullable=False, ondelete="CASCADE")
        read_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)

    class InboxFetchedUid(Model):
        """Ledger of IMAP messages already ingested: (mailbox, folder, UIDVALIDITY, UID).

        Committed in the same transaction as the message it produced, so a crash either
        keeps both or neither, and two pollers cannot ingest one UID twice.
        """

        __tablename__ = t("fetched_uid")
        __table_args__ = (
            sa.UniqueConstraint("mailbox_id", "folder", "uidvalidity", "uid"),
        )
        id = sa.Column(sa.Integer, primary_key=True)
        mailbox_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('mailbox')}.id", ondelete="CASCADE"), nullable=False
        )
        folder = sa.Column(sa.String(255), nullable=False)
        uidvalidity = sa.Column(sa.BigInteger, nullable=False)
        uid = sa.Column(sa.BigInteger, nullable=False)
        message_pk = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('message')}.id", ondelete="SET NULL"), nullable=True,
            index=True,
        )
        fetched_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)

    class InboxNotification(Model):
        """A mail to agents or admins (SLA breach, circuit breaker, rule, weekly summary).

        Not part of any customer thread; delivered by the outbox with the same claims and
        retries as replies, through the SMTP account of ``mailbox`` (or the first active one).
        """

        __tablename__ = t("notification")
        __table_args__ = (
            sa.Index(f"ix_{t('notification')}_due", "send_status", "next_attempt_at"),
        )
        id = sa.Column(sa.Integer, primary_key=True)
        mailbox_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('mailbox')}.id", ondelete="SET NULL"), nullable=True)
        ticket_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('ticket')}.id", ondelete="CASCADE"), nullable=True,
            index=True)
        reason = sa.Column(sa.String(40), nullable=False, default="")
        to = sa.Column(sa.JSON, nullable=False, default=list)
        subject = sa.Column(sa.String(998), nullable=False, default="")
        body_text = sa.Column(sa.Text, nullable=False, default="")
        body_html = sa.Column(sa.Text, nullable=True)
        send_status = sa.Column(sa.String(10), nullable=False, default="queued")
        send_error = sa.Column(sa.Text, nullable=True)
        send_attempts = sa.Column(sa.Integer, nullable=False, default=0)
        next_attempt_at = sa.Column(sa.DateTime, nullable=True)
        sent_at = sa.Column(sa.DateTime, nullable=True)
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)

        mailbox = relationship(InboxMailbox)
        ticket = relationship(InboxTicket)

    class InboxSyncState(Model):
        """Where polling of one folder stands, and which poller holds it (lease)."""

        __tablename__ = t("sync_state")
        __table_args__ = (sa.UniqueConstraint("mailbox_id", "folder"),)
        id = sa.Column(sa.Integer, primary_key=True)
        mailbox_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('mailbox')}.id", ondelete="CASCADE"), nullable=False
        )
        folder = sa.Column(sa.String(255), nullable=False)
        uidvalidity = sa.Column(sa.BigInteger, nullable=True)
        last_uid = sa.Column(sa.BigInteger, nullable=False, default=0)
        lease_owner = sa.Column(sa.String(100), nullable=True)
        lease_until = sa.Column(sa.DateTime, nullable=True)
        updated_at = sa.Column(sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    # -- web form and auto-replies (si0008, si0010) -------------------------------------------
    class InboxWebformHit(Model):
        """One contact-form submission from an IP: the per-IP rate limit, shared by every
        web worker because it lives in the database."""

        __tablename__ = t("webform_hit")
        __table_args__ = (sa.Index(f"ix_{t('webform_hit')}_ip_created", "ip", "created_at"),)
        id = sa.Column(sa.Integer, primary_key=True)
        ip = sa.Column(sa.String(64), nullable=False)
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)

    class InboxAutoMail(Model):
        """One automatic mail we sent (acknowledgement, out-of-hours reply, form confirmation,
        rule reply): counted for the per-sender limit and the mailbox circuit breaker."""

        __tablename__ = t("auto_mail")
        __table_args__ = (
            sa.Index(f"ix_{t('auto_mail')}_mailbox_created", "mailbox_id", "created_at"),
            sa.Index(f"ix_{t('auto_mail')}_recipient_created", "recipient", "created_at"),
        )
        id = sa.Column(sa.Integer, primary_key=True)
        mailbox_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('mailbox')}.id", ondelete="CASCADE"), nullable=False)
        ticket_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('ticket')}.id", ondelete="SET NULL"), nullable=True)
        recipient = sa.Column(sa.String(320), nullable=False)
        reason = sa.Column(sa.String(40), nullable=False, default="")
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)

    # -- outgoing webhooks (si0007) --------------------------------------------------------
    class InboxWebhook(Model):
        """An HTTP endpoint told about chosen events (signals.ALL), signed with its secret."""

        __tablename__ = t("webhook")
        id = sa.Column(sa.Integer, primary_key=True)
        name = sa.Column(sa.String(120), nullable=False, default="")
        url = sa.Column(sa.String(2000), nullable=False)
        events = sa.Column(sa.JSON, nullable=False, default=list)
        # HMAC key, encrypted with crypto.SecretBox; never rendered back.
        secret_encrypted = sa.Column(sa.Text, nullable=True)
        is_active = sa.Column(sa.Boolean, nullable=False, default=True)
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        updated_at = sa.Column(sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow)

        @property
        def secret(self) -> str | None:
            from .crypto import decrypt_secret

            return decrypt_secret(self.secret_encrypted)

        @secret.setter
        def secret(self, value: str | None) -> None:
            from .crypto import encrypt_secret

            self.secret_encrypted = encrypt_secret(value)

    class InboxWebhookDelivery(Model):
        """One event to POST to one webhook: queued in the change's transaction, sent by the
        worker with claims and retries like the outbox."""

        __tablename__ = t("webhook_delivery")
        __table_args__ = (
            sa.Index(f"ix_{t('webhook_delivery')}_due", "status", "next_attempt_at"),
            sa.Index(f"ix_{t('webhook_delivery')}_webhook_created", "webhook_id", "created_at"),
        )
        id = sa.Column(sa.Integer, primary_key=True)
        webhook_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('webhook')}.id", ondelete="CASCADE"), nullable=False)
        event = sa.Column(sa.String(40), nullable=False)
        payload = sa.Column(sa.JSON, nullable=False, default=dict)
        status = sa.Column(sa.String(10), nullable=False, default="queued")
        attempts = sa.Column(sa.Integer, nullable=False, default=0)
        next_attempt_at = sa.Column(sa.DateTime, nullable=True)
        response_code = sa.Column(sa.Integer, nullable=True)
        error = sa.Column(sa.Text, nullable=True)
        delivered_at = sa.Column(sa.DateTime, nullable=True)
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)

        webhook = relationship(InboxWebhook)

    # --- Rules (si0009, services/rules.py) ------------------------------------------------
    class InboxRule(Model):
        """Conditions and actions run on a new ticket and/or a customer reply, in order.

        ``conditions`` and ``actions`` are JSON lists validated by ``services.rules`` when
        saved (and read defensively when run). ``mailbox_id`` NULL: every mailbox.
        """

        __tablename__ = t("rule")
        __table_args__ = (sa.Index(f"ix_{t('rule')}_position", "position", "id"),)
        id = sa.Column(sa.Integer, primary_key=True)
        name = sa.Column(sa.String(120), nullable=False)
        mailbox_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('mailbox')}.id", ondelete="CASCADE"),
            nullable=True, index=True)
        trigger = sa.Column(sa.String(10), nullable=False, default="new")  # new/reply/both
        match = sa.Column(sa.String(3), nullable=False, default="all")  # all/any
        position = sa.Column(sa.Integer, nullable=False, default=0)
        is_active = sa.Column(sa.Boolean, nullable=False, default=True)
        stop_processing = sa.Column(sa.Boolean, nullable=False, default=False)
        conditions = sa.Column(sa.JSON, nullable=False, default=list)
        actions = sa.Column(sa.JSON, nullable=False, default=list)
        # Round-robin pointer: the key (as text) of the agent who got the last ticket.
        round_robin_last = sa.Column(sa.String(64), nullable=True)
        created_by_id = user_fk()
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        updated_at = sa.Column(sa.DateTime, nullable=False, default=utcnow, onupdate=utcnow)

        mailbox = relationship(InboxMailbox)

    # --- Reports and customer satisfaction (issue 6, migration si0012) -------------------
    # Reports count tickets by creation and closing date and replies by date: these indexes
    # let them read only the range asked for.
    sa.Index(f"ix_{t('ticket')}_created_at", InboxTicket.created_at)
    sa.Index(f"ix_{t('ticket')}_closed_at", InboxTicket.closed_at)
    # Agent replies only (partial indexes: inbound mail is not indexed, so ingestion pays
    # nothing); both cover their query, which then never reads the message rows.
    _outbound = sa.text("kind = 'outbound'")
    sa.Index(f"ix_{t('message')}_outbound_created", InboxMessage.created_at,
             InboxMessage.ticket_id, InboxMessage.mailbox_id, InboxMessage.author_id,
             InboxMessage.thread_reason, sqlite_where=_outbound, postgresql_where=_outbound)
    sa.Index(f"ix_{t('message')}_outbound_ticket", InboxMessage.ticket_id,
             InboxMessage.author_id, InboxMessage.thread_reason, sqlite_where=_outbound,
             postgresql_where=_outbound)

    # Messages still waiting for their body to be parsed (a handful at any time).
    _pending = sa.text("body_pending")
    sa.Index(f"ix_{t('message')}_body_pending", InboxMessage.id, sqlite_where=_pending,
             postgresql_where=_pending)

    class InboxSatisfactionRating(Model):
        """The customer's answer to "how did we do?" (one per ticket: a second click updates it)."""

        __tablename__ = t("satisfaction_rating")
        id = sa.Column(sa.Integer, primary_key=True)
        ticket_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('ticket')}.id", ondelete="CASCADE"), nullable=False,
            unique=True)
        # The closing reply whose links were used.
        message_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('message')}.id", ondelete="SET NULL"), nullable=True)
        rating = sa.Column(sa.String(10), nullable=False)  # great / okay / bad
        comment = sa.Column(sa.Text, nullable=False, default="")
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        updated_at = sa.Column(sa.DateTime, nullable=False, default=utcnow, index=True)

        ticket = relationship(InboxTicket, back_populates="satisfaction")

    InboxTicket.satisfaction = relationship(
        InboxSatisfactionRating, uselist=False, back_populates="ticket", passive_deletes=True)

    class InboxReportDigest(Model):
        """One row per weekly summary sent: the unique period makes it once per week even
        when several workers run the job at the same moment."""

        __tablename__ = t("report_digest")
        id = sa.Column(sa.Integer, primary_key=True)
        period = sa.Column(sa.String(20), nullable=False, unique=True)  # e.g. "2026-W47"
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)

    # -- collision safety: who is viewing or replying to a ticket (si0013) -------------------
    class InboxPresence(Model):
        """An agent's last heartbeat from a ticket's page: "viewing" or "replying".

        One row per (ticket, agent), upserted by each heartbeat; rows older than a few
        minutes mean nothing and are deleted by :mod:`shared_inbox.services.presence`.
        """

        __tablename__ = t("presence")
        __table_args__ = (
            sa.UniqueConstraint("ticket_id", "user_id"),
            sa.Index(f"ix_{t('presence')}_last_seen", "last_seen"),
        )
        id = sa.Column(sa.Integer, primary_key=True)
        ticket_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('ticket')}.id", ondelete="CASCADE"), nullable=False)
        user_id = user_fk(nullable=False, ondelete="CASCADE", index=False)
        state = sa.Column(sa.String(10), nullable=False, default="viewing")
        last_seen = sa.Column(sa.DateTime, nullable=False, default=utcnow)

    # -- Business hours and SLA (si0011; services/business_hours.py, services/sla.py) --------
    class InboxBusinessHoliday(Model):
        """A day the team is away: for one mailbox, or for all (mailbox_id NULL)."""

        __tablename__ = t("business_holiday")
        __table_args__ = (sa.Index(f"ix_{t('business_holiday')}_mailbox_day", "mailbox_id",
                                   "day"),)
        id = sa.Column(sa.Integer, primary_key=True)
        mailbox_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('mailbox')}.id", ondelete="CASCADE"), nullable=True)
        day = sa.Column(sa.Date, nullable=False)
        name = sa.Column(sa.String(120), nullable=False, default="")
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        mailbox = relationship(InboxMailbox)

    class InboxSlaPolicy(Model):
        """Targets (in business minutes) for the tickets it matches.

        A policy matches on mailbox, priority and tag (NULL: any); the most specific match
        wins (most criteria set), then the lowest position, then the oldest.
        """

        __tablename__ = t("sla_policy")
        id = sa.Column(sa.Integer, primary_key=True)
        name = sa.Column(sa.String(120), nullable=False)
        position = sa.Column(sa.Integer, nullable=False, default=0)
        is_active = sa.Column(sa.Boolean, nullable=False, default=True)
        mailbox_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('mailbox')}.id", ondelete="CASCADE"), nullable=True,
            index=True)
        priority = sa.Column(sa.String(10), nullable=True)
        tag_id = sa.Column(
            sa.Integer, sa.ForeignKey(f"{t('tag')}.id", ondelete="CASCADE"), nullable=True,
            index=True)
        first_response_minutes = sa.Column(sa.Integer, nullable=True)
        resolution_minutes = sa.Column(sa.Integer, nullable=True)
        created_at = sa.Column(sa.DateTime, nullable=False, default=utcnow)
        mailbox = relationship(InboxMailbox)
        tag = relationship(InboxTag)

    ns = SimpleNamespace(
        db=db,
        user_model=user_model,
        prefix=prefix,
        Mailbox=InboxMailbox,
        MailboxMember=InboxMailboxMember,
        Customer=InboxCustomer,
        Tag=InboxTag,
        ticket_tags=ticket_tags,
        Ticket=InboxTicket,
        Message=InboxMessage,
        Attachment=InboxAttachment,
        SavedReply=InboxSavedReply,
        Activity=InboxActivity,
        FetchedUid=InboxFetchedUid,
        SyncState=InboxSyncState,
        TicketRead=InboxTicketRead,
        Notification=InboxNotification,
        BusinessHoliday=InboxBusinessHoliday,  # business hours and SLA (si0011)
        SlaPolicy=InboxSlaPolicy,
        SatisfactionRating=InboxSatisfactionRating,  # issue 6
        ReportDigest=InboxReportDigest,  # issue 6
        Rule=InboxRule,
        Webhook=InboxWebhook,
        WebhookDelivery=InboxWebhookDelivery,
        WebformHit=InboxWebformHit,
        AutoMail=InboxAutoMail,
        Presence=InboxPresence,  # collision safety (si0013)
    )
    ns.tables = [
        m.__table__ if hasattr(m, "__table__") else m
        for m in (
            InboxMailbox, InboxMailboxMember, InboxCustomer, InboxTag, InboxTicket,
            ticket_tags, InboxMessage, InboxAttachment, InboxSavedReply, InboxActivity,
            InboxFetchedUid, InboxSyncState, InboxTicketRead, InboxNotification,
            InboxBusinessHoliday, InboxSlaPolicy,
            InboxSatisfactionRating, InboxReportDigest,  # issue 6
            InboxRule,
            InboxWebhook, InboxWebhookDelivery,
            InboxWebformHit, InboxAutoMail,
            InboxPresence,
        )
    ]
    OWN_TABLE_NAMES.update(tbl.name for tbl in ns.tables)
    OWN_TABLE_NAMES.add(prefix + "alembic_version")
    OWN_TABLE_PREFIXES.add(prefix)
    built[prefix] = ns
    return ns
