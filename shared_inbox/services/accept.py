"""The poller's hot path: a FETCH batch of mail into tickets from the header blocks alone.

Parsing a whole message (MIME tree, charsets, HTML sanitizing, attachments, quoted history)
costs about ten times more than reading its header block, and the inbox needs only the
header block to list the mail: who sent it, the subject, the date and, from Message-ID /
In-Reply-To / References, which conversation it belongs to. So for each batch the poller
reads the header blocks, looks up customers and threads with one query each, stores the
raw mail (one file per batch where the storage can: ``put_many``) and inserts tickets,
messages, activity and UID-ledger rows with one statement per table, all in the batch's
transaction, with ``body_pending`` set. :mod:`.complete` parses the rest right after the
poll (or, after a crash, on the next poll or automation run); the ticket page completes a
pending message itself before showing it, and automation (rules, auto-replies, SLA)
waits for the body.

Mail whose placement may depend on its body, or that might be a copy of mail we have,
takes the full path (:func:`.ingest.ingest`) instead, in order, inside the same
transaction: bounces and delivery reports (their ticket is the one of the returned
message), mail without a Message-ID or with one we already stored (duplicates are decided
by content), and anything whose header block cannot be read on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm.util import identity_key

from ..extension import get_state
from ..mail.classify import Classification, classify_headers
from ..mail.parse import ParsedMessage, parse_headers
from ..mail.threader import matched, thread_candidates, ticket_by_token
from ..models import utcnow
from .automation import pending_state
from .customers import customer_email
from .ingest import envelope_columns, ingest, ingest_date, ledger_values

#: IN lists are cut to this many values (SQLite's default limit is far higher; this keeps
#: the statements small on every database).
IN_CHUNK = 500


@dataclass
class _Accepted:
    """One mail on the hot path, until its rows are written."""

    uid: int
    raw: bytes
    received: object
    envelope: ParsedMessage
    kind: Classification
    customer: list | None = None  # [id or None, email, name]
    ticket: dict | None = None  # a new ticket's row (id filled on insert), or None
    ticket_id: int | None = None  # an existing ticket
    reason: str = ""
    date: object = None

    @property
    def ticket_pk(self) -> int:
        """The ticket's id (a new ticket's once inserted)."""
        return self.ticket["id"] if self.ticket is not None else self.ticket_id


@dataclass
class BatchAcceptor:
    """Ingests the mail of one FETCH batch of one mailbox folder, in the caller's
    transaction (the caller commits, or rolls back and ingests one message at a time)."""

    mailbox: object
    folder: str
    uidvalidity: int
    imported: bool
    ingested: int = 0
    skipped: int = 0
    _run: list = field(default_factory=list)

    def ingest_items(self, items) -> None:
        """``items`` is ``[(uid, raw or None if already in the ledger, INTERNALDATE)]``."""
        hot = []
        for uid, raw, received in items:
            hot.append(self.read_header_block(raw) if raw is not None else None)
        known = self._known_message_ids({h[0].message_id[:998] for h in hot if h})
        for (uid, raw, received), h in zip(items, hot):
            if raw is None:
                self.skipped += 1
                continue
            if h is not None and h[0].message_id[:998] not in known:
                known.add(h[0].message_id[:998])
                self._run.append(_Accepted(uid, raw, received, h[0], h[1]))
                continue
            # The full path reads through the ORM: write what this batch accepted so far.
            self.write()
            message = ingest(self.mailbox, raw, folder=self.folder,
                             uidvalidity=self.uidvalidity, uid=uid, received_at=received,
                             imported=self.imported, check_ledger=False, commit=False)
            get_state().db.session.flush()
            if message is None:
                self.skipped += 1
            else:
                self.ingested += 1
                if message.message_id:
                    known.add(message.message_id)
        self.write()

    @staticmethod
    def read_header_block(raw: bytes):
        """``(envelope, classification)`` when the header block is enough, else None."""
        envelope = parse_headers(raw)
        if envelope is None or envelope.is_malformed or not envelope.message_id:
            return None
        kind = classify_headers(raw, envelope)
        if kind is None or kind.is_bounce or kind.bounced_message_id:
            return None  # (bounces take the full path: their ticket is the returned mail's)
        return envelope, kind

    def _known_message_ids(self, ids: set[str]) -> set[str]:
        """Which of ``ids`` an inbound message we stored already has."""
        state = get_state()
        m = state.models
        found: set[str] = set()
        for chunk in _chunks(sorted(ids)):
            found.update(state.db.session.scalars(sa.select(m.Message.message_id).where(
                m.Message.message_id.in_(chunk), m.Message.kind == "inbound")))
        return found

    # ------------------------------------------------------------------ writing a run

    def write(self) -> None:
        """Insert the rows of the mail accepted since the last write."""
        run, self._run = self._run, []
        if not run:
            return
        state = get_state()
        m = state.models
        session = state.db.session
        now = utcnow()
        for item in run:
            item.date = ingest_date(item.envelope.date, item.received, now)
        self._customers(run, now)
        self._thread(run)
        new_tickets, joined = self._tickets(run, now)
        keys = _store_raw([item.raw for item in run])
        T = m.Ticket.__table__
        if new_tickets:
            ids = session.execute(
                sa.insert(T).returning(T.c.id, sort_by_parameter_order=True),
                new_tickets).scalars().all()
            for row, pk in zip(new_tickets, ids):
                row["id"] = pk
        rows = [dict(
            **envelope_columns(item.envelope, item.kind), ticket_id=item.ticket_pk,
            mailbox_id=self.mailbox.id, kind="inbound", is_imported=self.imported,
            body_text="", raw_key=key, raw_size=len(item.raw), is_malformed=False,
            thread_reason=item.reason, date=item.date, created_at=now, body_pending=True,
            automation_state=pending_state(new_ticket=item.reason == "new conversation",
                                           imported=self.imported),
        ) for item, key in zip(run, keys)]
        M = m.Message.__table__
        message_ids = session.execute(
            sa.insert(M).returning(M.c.id, sort_by_parameter_order=True), rows).scalars().all()
        activities, ledger = [], []
        for item, pk in zip(run, message_ids):
            ticket_id = item.ticket_pk
            if item.reason == "new conversation":
                activities.append(_activity(ticket_id, "created", now,
                                            mailbox=self.mailbox.email_address))
            elif item.kind.is_automated:
                activities.append(_activity(ticket_id, "automated_reply", now, message=pk,
                                            why=item.reason, recipients=[]))
            else:
                reopened = joined.get(ticket_id, {}).get("reopened_by")
                if reopened is item:
                    activities.append(_activity(ticket_id, "reopened", now,
                                                old=joined[ticket_id]["old_status"],
                                                reason="customer replied"))
                activities.append(_activity(ticket_id, "customer_replied", now, message=pk,
                                            why=item.reason))
            ledger.append(ledger_values(self.mailbox, self.folder, self.uidvalidity,
                                        item.uid, pk, now))
        self._update_joined(joined, now)
        if activities:
            session.execute(sa.insert(m.Activity.__table__), activities)
        session.execute(sa.insert(m.FetchedUid.__table__), ledger)
        self.ingested += len(run)

    def _customers(self, run: list[_Accepted], now) -> None:
        """Each mail's customer, found by address or created; a name given fills an empty
        one, never replaces it (as :func:`.customers.get_or_create_customer`)."""
        state = get_state()
        m = state.models
        session = state.db.session
        C = m.Customer.__table__
        by_email: dict[str, list] = {}
        for item in run:
            sender = item.envelope.from_
            email = customer_email(sender.email if sender else "")
            name = (sender.name if sender else "") or ""
            item.customer = by_email.setdefault(email, [None, email, "", False])
            if name and not item.customer[2]:
                item.customer[2] = name
        for chunk in _chunks(sorted(by_email)):
            for pk, email, name in session.execute(
                    sa.select(C.c.id, C.c.email, C.c.name).where(C.c.email.in_(chunk))):
                entry = by_email.get(email)
                if entry is None:
                    continue
                entry[0] = pk
                entry[3] = bool(entry[2]) and not name  # fill the empty name
                if name:
                    entry[2] = name
        fresh = [e for e in by_email.values() if e[0] is None]
        if fresh:
            ids = session.execute(
                sa.insert(C).returning(C.c.id, sort_by_parameter_order=True),
                [dict(email=e[1], name=e[2][:255], created_at=now, updated_at=now)
                 for e in fresh]).scalars().all()
            for entry, pk in zip(fresh, ids):
                entry[0] = pk
        for entry in by_email.values():
            if entry[3]:
                _forget(m.Customer, entry[0])
                session.execute(sa.update(C).where(C.c.id == entry[0])
                                .values(name=entry[2][:255], updated_at=now))

    def _thread(self, run: list[_Accepted]) -> None:
        """Each mail's ticket, as :func:`..mail.threader.find_ticket` would find it,
        with one query for the whole run (and the run's own earlier mail first)."""
        state = get_state()
        m = state.models
        session = state.db.session
        candidates = [[(mid[:998], how) for mid, how in thread_candidates(item.envelope)]
                      for item in run]
        wanted = {mid for found in candidates for mid, _how in found}
        stored: dict[str, tuple[int, int]] = {}  # message id -> (newest row id, ticket id)
        for chunk in _chunks(sorted(wanted)):
            for mid, pk, ticket_id in session.execute(
                    sa.select(m.Message.message_id, m.Message.id, m.Message.ticket_id)
                    .where(m.Message.message_id.in_(chunk))):
                if mid not in stored or pk > stored[mid][0]:
                    stored[mid] = (pk, ticket_id)
        in_run: dict[str, _Accepted] = {}
        for item, found in zip(run, candidates):
            for mid, how in found:
                earlier = in_run.get(mid)
                if earlier is not None:
                    item.ticket, item.ticket_id = earlier.ticket, earlier.ticket_id
                    item.reason = matched(how, mid)
                    break
                if mid in stored:
                    item.ticket_id = stored[mid][1]
                    item.reason = matched(how, mid)
                    break
            else:
                item.ticket_id, item.reason = ticket_by_token(item.envelope.subject,
                                                              item.customer[0])
                if item.ticket_id is None:  # a new ticket: its row is filled by _tickets
                    item.ticket, item.reason = {}, "new conversation"
            in_run[item.envelope.message_id[:998]] = item

    def _tickets(self, run: list[_Accepted], now) -> tuple[list[dict], dict]:
        """New tickets' rows (complete before their INSERT) and, per existing ticket
        joined, what the run does to it (as :func:`.ingest._ingest_parsed`)."""
        state = get_state()
        m = state.models
        new_tickets: list[dict] = []
        joined: dict[int, dict] = {}
        for item in run:
            if item.reason == "new conversation":
                item.ticket.update(
                    mailbox_id=self.mailbox.id, customer_id=item.customer[0],
                    subject=(item.envelope.subject or "(no subject)")[:998], status="open",
                    created_at=item.date, updated_at=now, last_message_at=item.date,
                    last_inbound_at=item.date, message_count=1, snippet="", is_flagged=False)
                new_tickets.append(item.ticket)
                continue
            if item.ticket is not None:  # joins a ticket this run creates
                item.ticket["message_count"] += 1
                if not item.kind.is_automated:
                    for column in ("last_message_at", "last_inbound_at"):
                        item.ticket[column] = max(item.ticket[column], item.date)
                continue
            change = joined.setdefault(item.ticket_id, dict(
                count=0, date=None, reopen=False, reopened_by=None, old_status=None))
            change["count"] += 1
            if not item.kind.is_automated:
                change["date"] = item.date if change["date"] is None \
                    else max(change["date"], item.date)
                change.setdefault("human", []).append(item)
        T = m.Ticket.__table__
        human = [tid for tid, c in joined.items() if c.get("human")]
        for chunk in _chunks(human):
            for tid, status, snoozed in state.db.session.execute(
                    sa.select(T.c.id, T.c.status, T.c.snoozed_until).where(T.c.id.in_(chunk))):
                if status in ("closed", "pending") or snoozed is not None:
                    change = joined[tid]
                    change.update(reopen=True, reopened_by=change["human"][0], old_status=status)
        return new_tickets, joined

    @staticmethod
    def _update_joined(joined: dict, now) -> None:
        """The existing tickets the run joined: counters and dates relative to the stored
        row (an agent's change meanwhile is kept), reopened if the customer wrote. One
        executemany per shape of change."""
        state = get_state()
        m = state.models
        session = state.db.session
        shapes: dict[tuple[bool, bool], list[dict]] = {}
        for tid, change in joined.items():
            _forget(m.Ticket, tid)
            shapes.setdefault((change["date"] is not None, change["reopen"]), []).append(
                dict(b_id=tid, b_count=change["count"], b_now=now, b_date=change["date"]))
        for (dated, reopen), params in shapes.items():
            session.execute(_joined_update(m.Ticket.__table__, dated, reopen), params)


def _joined_update(table, dated: bool, reopen: bool):
    T = table.c
    values = {"message_count": sa.func.coalesce(T.message_count, 0) + sa.bindparam("b_count"),
              "updated_at": sa.bindparam("b_now")}
    if dated:
        date = sa.bindparam("b_date", type_=sa.DateTime)
        for column in ("last_message_at", "last_inbound_at"):
            col = T[column]
            values[column] = sa.case((sa.or_(col.is_(None), col <= date), date), else_=col)
    if reopen:
        values.update(status="open", snoozed_until=None, closed_at=None)
    return sa.update(table).where(T.id == sa.bindparam("b_id")).values(values)


def _store_raw(raws: list[bytes]) -> list[str]:
    """The raw copies: one file for the run where the storage can (``put_many``)."""
    storage = get_state().storage
    put_many = getattr(storage, "put_many", None)
    if put_many is not None:
        return put_many(raws, kind="raw")
    return [storage.put(raw, kind="raw", suffix=".eml") for raw in raws]


def _activity(ticket_id, action, now, **detail) -> dict:
    return dict(ticket_id=ticket_id, actor_id=None, action=action, detail=detail,
                created_at=now)


def _forget(model, pk) -> None:
    """A row changed behind the session's back: drop its cached state, if loaded."""
    session = get_state().db.session
    obj = session.identity_map.get(identity_key(model, pk))
    if obj is not None:
        session.expire(obj)


def _chunks(values):
    values = list(values)
    for start in range(0, len(values), IN_CHUNK):
        yield values[start:start + IN_CHUNK]
