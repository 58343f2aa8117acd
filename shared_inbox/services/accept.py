"""The poller's hot path: a fetched mail into its ticket from its headers alone.

Parsing a whole message (MIME tree, charsets, HTML sanitizing, attachments, quoted history)
costs about fifty times more than reading its header block, and the inbox needs only the
header block to show the mail: who sent it, the subject, the date and, from Message-ID /
In-Reply-To / References, which conversation it belongs to. So the poller stores the raw
mail and those fields here, with plain SQL statements in the FETCH batch's transaction
(``body_pending`` set), and :mod:`.complete` parses the rest right after the batch is
committed (or, after a crash, on the next poll or automation run). Automation (rules,
auto-replies, SLA) waits for the body.

Mail whose placement may depend on its body, or that might be a copy of mail we have,
takes the full path (:func:`.ingest.ingest`) instead, inside the same transaction:
bounces and delivery reports (their ticket is the one of the returned message), mail
without a Message-ID or with one we already stored (duplicates are decided by content),
and anything whose header block cannot be read on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm.util import identity_key

from ..extension import get_state
from ..mail.classify import classify_headers
from ..mail.parse import parse_headers
from ..mail.threader import find_ticket_id
from ..models import utcnow
from .automation import pending_state
from .ingest import ingest, ingest_date, ledger_values

#: Returned by :meth:`Acceptor.accept` when the mail needs the full path.
FULL_PATH = object()


@dataclass
class Acceptor:
    """Accepts the mail of one FETCH batch (one transaction) of one mailbox folder."""

    mailbox: object
    folder: str
    uidvalidity: int
    imported: bool
    _customers: dict = field(default_factory=dict)  # email -> [id, name]
    _message_ids: set = field(default_factory=set)  # accepted in this batch
    _activities: list = field(default_factory=list)
    _ledger: list = field(default_factory=list)

    def ingest(self, uid: int, raw: bytes, received) -> bool:
        """Store one fetched mail; False when it was a copy of mail we have."""
        result = self.accept(uid, raw, received)
        if result is FULL_PATH:
            self.flush()  # the full path reads and writes through the ORM
            message = ingest(self.mailbox, raw, folder=self.folder, uidvalidity=self.uidvalidity,
                             uid=uid, received_at=received, imported=self.imported,
                             check_ledger=False, commit=False)
            get_state().db.session.flush()
            return message is not None
        return True

    def accept(self, uid: int, raw: bytes, received):
        """The hot path for one mail: its message id, or FULL_PATH."""
        state = get_state()
        m = state.models
        session = state.db.session
        envelope = parse_headers(raw)
        if envelope is None or envelope.is_malformed or not envelope.message_id:
            return FULL_PATH
        message_id = envelope.message_id[:998]
        if message_id in self._message_ids or session.execute(
                sa.select(m.Message.id).where(m.Message.message_id == message_id,
                                              m.Message.kind == "inbound").limit(1)).first():
            return FULL_PATH  # a copy, or a sender reusing ids: compare contents
        kind = classify_headers(raw, envelope)
        if kind is None:
            return FULL_PATH
        sender = envelope.from_
        customer_id = self._customer(sender.email if sender else "", sender.name if sender else "")
        ticket_id, reason = find_ticket_id(envelope, customer_id)
        now = utcnow()
        date = ingest_date(envelope.date, received, now)
        raw_key = state.storage.put(raw, kind="raw", suffix=".eml")
        new_ticket = ticket_id is None
        if new_ticket:
            ticket_id = session.execute(sa.insert(m.Ticket.__table__), dict(
                mailbox_id=self.mailbox.id, customer_id=customer_id,
                subject=(envelope.subject or "(no subject)")[:998], status="open",
                created_at=date, updated_at=now, last_message_at=date, last_inbound_at=date,
                message_count=1, snippet="", is_flagged=False,
            )).inserted_primary_key[0]
            reason = "new conversation"
        message_pk = session.execute(sa.insert(m.Message.__table__), dict(
            ticket_id=ticket_id, mailbox_id=self.mailbox.id, kind="inbound",
            from_name=(sender.name if sender else "")[:255],
            from_email=(sender.email if sender else "")[:320],
            to=[[a.name, a.email] for a in envelope.to],
            cc=[[a.name, a.email] for a in envelope.cc],
            subject=(envelope.subject or "")[:998], message_id=message_id,
            in_reply_to=" ".join(envelope.in_reply_to),
            references=" ".join(envelope.references),
            headers={**envelope.headers, "_classification": {
                "reasons": kind.reasons, "failed_recipients": kind.failed_recipients,
                "bounced_message_id": kind.bounced_message_id,
                "suppress_autoreply": kind.suppress_autoreply}},
            is_automated=kind.is_automated, is_bounce=False, is_imported=self.imported,
            body_text="", raw_key=raw_key, raw_size=len(raw), is_malformed=False,
            thread_reason=reason, date=date, created_at=now, body_pending=True,
            automation_state=pending_state(new_ticket=new_ticket, imported=self.imported),
        )).inserted_primary_key[0]
        self._message_ids.add(message_id)
        if new_ticket:
            self._activity(ticket_id, "created", now, mailbox=self.mailbox.email_address)
        else:
            self._join(ticket_id, message_pk, reason, date, now, kind.is_automated)
        self._ledger.append(ledger_values(self.mailbox, self.folder, self.uidvalidity, uid,
                                          message_pk, now))
        return message_pk

    def _join(self, ticket_id, message_pk, reason, date, now, automated) -> None:
        """What a new message does to the ticket it joins (as :func:`.ingest._ingest_parsed`)."""
        state = get_state()
        m = state.models
        session = state.db.session
        self._forget(m.Ticket, ticket_id)
        T = m.Ticket.__table__.c
        table = m.Ticket.__table__
        values = {"message_count": T.message_count + 1, "updated_at": now}
        if automated:
            # An out-of-office joins the conversation but does not make the customer
            # "waiting" again, nor reopen what the team closed.
            session.execute(sa.update(table).where(T.id == ticket_id).values(values))
            self._activity(ticket_id, "automated_reply", now, message=message_pk, why=reason,
                           recipients=[])
            return
        status, snoozed = session.execute(
            sa.select(T.status, T.snoozed_until).where(T.id == ticket_id)).one()
        values["last_message_at"] = sa.case(
            (sa.or_(T.last_message_at.is_(None), T.last_message_at <= date), date),
            else_=T.last_message_at)
        values["last_inbound_at"] = sa.case(
            (sa.or_(T.last_inbound_at.is_(None), T.last_inbound_at <= date), date),
            else_=T.last_inbound_at)
        reopen = status in ("closed", "pending") or snoozed is not None
        if reopen:
            values.update(status="open", snoozed_until=None, closed_at=None)
        session.execute(sa.update(table).where(T.id == ticket_id).values(values))
        if reopen:
            self._activity(ticket_id, "reopened", now, old=status, reason="customer replied")
        self._activity(ticket_id, "customer_replied", now, message=message_pk, why=reason)

    def _customer(self, email: str, name: str) -> int:
        """Found or created by address; a first name given fills an empty one
        (as :func:`.customers.get_or_create_customer`)."""
        state = get_state()
        m = state.models
        session = state.db.session
        email = (email or "").strip().lower() or "unknown@invalid"
        known = self._customers.get(email)
        if known is None:
            row = session.execute(sa.select(m.Customer.id, m.Customer.name)
                                  .where(m.Customer.email == email)).first()
            if row is None:
                now = utcnow()
                pk = session.execute(sa.insert(m.Customer.__table__), dict(
                    email=email, name=name or "", created_at=now, updated_at=now,
                )).inserted_primary_key[0]
                known = self._customers[email] = [pk, name or ""]
                return pk
            known = self._customers[email] = [row[0], row[1]]
        if name and not known[1]:
            self._forget(m.Customer, known[0])
            session.execute(sa.update(m.Customer.__table__).where(m.Customer.__table__.c.id == known[0])
                            .values(name=name[:255], updated_at=utcnow()))
            known[1] = name
        return known[0]

    def _activity(self, ticket_id, action, now, **detail) -> None:
        self._activities.append(dict(ticket_id=ticket_id, actor_id=None, action=action,
                                     detail=detail, created_at=now))

    def _forget(self, model, pk) -> None:
        """A row changed behind the session's back: drop its cached state, if loaded."""
        session = get_state().db.session
        obj = session.identity_map.get(identity_key(model, pk))
        if obj is not None:
            session.expire(obj)

    def flush(self) -> None:
        """Write the collected activity and ledger rows (before the full path, and at the
        end of the batch: the ledger's unique key stops a second poller there)."""
        state = get_state()
        m = state.models
        session = state.db.session
        if self._activities:
            session.execute(sa.insert(m.Activity.__table__), self._activities)
            self._activities = []
        if self._ledger:
            session.execute(sa.insert(m.FetchedUid.__table__), self._ledger)
            self._ledger = []
