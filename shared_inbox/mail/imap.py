"""Polling one IMAP mailbox into tickets.

Messages are tracked by UID per folder together with UIDVALIDITY, never by the \\Seen
flag: people who also read the mailbox in Outlook or on a phone must not make mail
invisible to the inbox. Bodies are fetched with ``BODY.PEEK[]`` on a read-only (EXAMINE)
selection, so nothing on the server changes unless the admin asked for it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import imapclient
import sqlalchemy as sa
from imapclient.exceptions import IMAPClientError, LoginError

from ..config import cv
from ..extension import get_state
from ..models import utcnow
from .net import is_loopback
from ..services.accept import BatchAcceptor
from ..services.ingest import commit_with_files, ingest, rollback_with_files

log = logging.getLogger("shared_inbox.imap")


class MailboxConnectionError(Exception):
    """A problem a person can act on, worded for them."""


class MailboxNeedsReauthorisation(MailboxConnectionError):
    """The OAuth grant was revoked or expired: an admin must reconnect the mailbox."""


@dataclass
class PollResult:
    mailbox: str
    ingested: int = 0
    skipped: int = 0
    error: str | None = None
    locked: bool = False
    needs_reauth: bool = False
    uids: list[int] = field(default_factory=list)


def connect(mailbox) -> imapclient.IMAPClient:
    """An authenticated connection; raises MailboxConnectionError with a readable reason."""
    host, port, security = mailbox.imap_host, mailbox.imap_port, mailbox.imap_security
    if security == "plain" and not is_loopback(host):
        raise MailboxConnectionError(
            "unencrypted IMAP is only allowed to this machine (127.0.0.1); choose SSL or STARTTLS"
        )
    timeout = cv("IMAP_TIMEOUT")
    try:
        client = imapclient.IMAPClient(
            host, port=port, ssl=security == "ssl", timeout=timeout,
            ssl_context=ssl.create_default_context() if security != "plain" else None,
        )
        _quiet_imaplib(client)
        if security == "starttls":
            try:
                client.starttls(ssl.create_default_context())
            except BaseException:
                _close_quietly(client)  # the plain connection must not outlive the failure
                raise
    except ssl.SSLCertVerificationError as exc:
        raise MailboxConnectionError(
            f"certificate of {host} not trusted: {exc.verify_message}"
        ) from exc
    except (socket.gaierror,) as exc:
        raise MailboxConnectionError(f"cannot find the server {host!r}: check the host name") from exc
    except (ConnectionRefusedError, socket.timeout, TimeoutError, OSError) as exc:
        raise MailboxConnectionError(
            f"cannot connect to {host}:{port} ({exc.__class__.__name__}: {exc})"
        ) from exc
    from .oauth import NeedsReauthorisation, OAuthError, imap_login

    try:
        imap_login(client, mailbox)
    except LoginError as exc:
        _logout_quietly(client)
        raise MailboxConnectionError("login failed: check the user name and password") from exc
    except NeedsReauthorisation as exc:
        _logout_quietly(client)
        raise MailboxNeedsReauthorisation(str(exc)) from exc
    except OAuthError as exc:
        _logout_quietly(client)
        raise MailboxConnectionError(str(exc)) from exc
    if mailbox.auth_type == "xoauth2":
        # Keep a refreshed (or rotated) token even if nothing else of this poll is kept.
        get_state().db.session.commit()
    return client


def _quiet_imaplib(client) -> None:
    """imapclient sets imaplib's debug level to 5 to route its trace to the
    ``imapclient.imaplib`` logger; imaplib then builds ``repr()`` of every response, the
    whole message included, even when that logger drops it: for a 34 MB message about
    80 MB of strings (2.3 times the message) and a few percent of the poll's CPU.  Keep
    the trace only when someone listens."""
    if not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
        imap = getattr(client, "_imap", None)
        if imap is not None and hasattr(imap, "debug"):
            imap.debug = 0


def _close_quietly(client) -> None:
    """Close the socket of a connection that failed before login (no LOGOUT possible)."""
    sock = getattr(getattr(client, "_imap", None), "sock", None)
    for closer in (client.shutdown, getattr(sock, "close", None)):
        try:
            if closer is not None:
                closer()
        except Exception:  # already closed or never fully open
            pass


def _logout_quietly(client) -> None:
    try:
        client.logout()
    except Exception:  # the connection may already be gone: still free the socket
        _close_quietly(client)


def backoff_seconds(failures: int) -> int:
    """1, 2, 4... poll intervals after consecutive failures, at most an hour."""
    return min(cv("POLL_INTERVAL") * 2 ** max(failures - 1, 0), 3600)


def select(client, folder: str, readonly: bool) -> dict:
    try:
        return client.select_folder(folder, readonly=readonly)
    except IMAPClientError as exc:
        raise MailboxConnectionError(f"folder {folder!r} not found on the server") from exc


def test_connection(mailbox) -> str:
    """Log in and open the folder; return a one-line summary or raise MailboxConnectionError."""
    client = connect(mailbox)
    try:
        info = select(client, mailbox.imap_folder, readonly=True)
        return f"connected: folder {mailbox.imap_folder!r} has {info.get(b'EXISTS', 0)} messages"
    finally:
        _logout_quietly(client)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def _sync_state(mailbox):
    state = get_state()
    m = state.models
    session = state.db.session
    sync = session.scalar(sa.select(m.SyncState).where(
        m.SyncState.mailbox_id == mailbox.id, m.SyncState.folder == mailbox.imap_folder))
    if sync is None:
        sync = m.SyncState(mailbox_id=mailbox.id, folder=mailbox.imap_folder, last_uid=0)
        session.add(sync)
        try:
            session.commit()
        except sa.exc.IntegrityError:
            session.rollback()
            return _sync_state(mailbox)
    return sync


def _take_lease(sync, owner: str) -> bool:
    """One poller per mailbox folder at a time, on SQLite and PostgreSQL alike."""
    state = get_state()
    m = state.models
    now = utcnow()
    result = state.db.session.execute(
        sa.update(m.SyncState)
        .where(m.SyncState.id == sync.id)
        .where(sa.or_(m.SyncState.lease_until.is_(None), m.SyncState.lease_until < now,
                      m.SyncState.lease_owner == owner))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=cv("LEASE_SECONDS")))
        .execution_options(synchronize_session=False)
    )
    state.db.session.commit()
    return result.rowcount == 1


def _release_lease(sync, owner: str) -> None:
    state = get_state()
    m = state.models
    state.db.session.execute(
        sa.update(m.SyncState)
        .where(m.SyncState.id == sync.id, m.SyncState.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    state.db.session.commit()


def poll_mailbox(mailbox) -> PollResult:
    """Fetch every message not yet ingested from the mailbox's folder."""
    state = get_state()
    session = state.db.session
    result = PollResult(mailbox=mailbox.email_address)
    sync = _sync_state(mailbox)
    owner = _owner()
    if not _take_lease(sync, owner):
        result.locked = True
        return result
    # The poller commits once per message; re-reading the mailbox and cursor rows after
    # every commit would double its queries. Other code sees fresh rows as usual.
    current = session()  # the scoped session's Session for this context
    expire_on_commit, current.expire_on_commit = current.expire_on_commit, False
    # Attachment and raw files are fsynced together before each batch's commit.
    deferred = getattr(state.storage, "deferred_sync", None)
    try:
        client = connect(mailbox)
        try:
            with deferred() if deferred is not None else contextlib.nullcontext():
                _fetch_new(client, mailbox, sync, result, owner)
        finally:
            _logout_quietly(client)
    except MailboxNeedsReauthorisation as exc:
        result.error = str(exc)
        result.needs_reauth = True
    except MailboxConnectionError as exc:
        result.error = str(exc)
    except (IMAPClientError, OSError) as exc:
        result.error = f"the server broke off the connection ({exc.__class__.__name__}: {exc})"
    finally:
        session.rollback()  # nothing half-done survives; ingested messages were committed
        if result.error:
            log.warning("polling %s failed: %s", mailbox.email_address, result.error)
            mailbox.last_error = result.error
            if result.needs_reauth:
                mailbox.needs_reauth = True
            mailbox.failure_count = (mailbox.failure_count or 0) + 1
            mailbox.next_poll_at = utcnow() + timedelta(
                seconds=backoff_seconds(mailbox.failure_count))
        else:
            mailbox.last_error = None
            mailbox.failure_count = 0
            mailbox.next_poll_at = None
        mailbox.last_polled_at = utcnow()
        session.commit()
        current.expire_on_commit = expire_on_commit
        _release_lease(sync, owner)
    _complete_bodies(mailbox)
    if result.ingested:
        _automate(mailbox)
    return result


def _complete_bodies(mailbox) -> None:
    """Parse the bodies of what was just accepted (the automation job catches up on anything
    left if this fails or the process dies first)."""
    from ..services.complete import complete_pending

    try:
        complete_pending(mailbox_id=mailbox.id)
    except Exception:
        get_state().db.session.rollback()
        log.exception("parsing the mail fetched from %s failed", mailbox.email_address)


def _automate(mailbox) -> None:
    """Run rules / auto-replies / SLA for what was just ingested (the automation job
    catches up on anything left if this fails or the process dies first)."""
    from ..services.automation import process_pending

    try:
        process_pending(mailbox_id=mailbox.id)
    except Exception:
        get_state().db.session.rollback()
        log.exception("automation after polling %s failed", mailbox.email_address)


def _fetch_new(client, mailbox, sync, result: PollResult, owner: str) -> None:
    state = get_state()
    session = state.db.session
    # EXAMINE (read-only) unless the admin asked us to mark or move fetched mail.
    info = select(client, mailbox.imap_folder, readonly=mailbox.after_fetch == "leave")
    uidvalidity = int(info[b"UIDVALIDITY"])
    importing = False
    if sync.uidvalidity != uidvalidity:
        if sync.uidvalidity is not None:
            log.warning("UIDVALIDITY of %s changed: resynchronising (duplicates are skipped "
                        "by Message-ID and content)", mailbox.email_address)
            uids = client.search(["ALL"])
            sync.last_uid = 0
            importing = True
        elif mailbox.import_since is not None:
            uids = client.search(["SINCE", mailbox.import_since.date()])
            importing = True
        else:
            # Only new mail: start after the newest message present now.
            uids = []
            sync.last_uid = max(int(info.get(b"UIDNEXT", 1)) - 1, 0)
        sync.uidvalidity = uidvalidity
        session.commit()
    else:
        uids = client.search(["UID", f"{sync.last_uid + 1}:*"])
    # "n:*" returns the highest UID even when it is below n: filter ourselves.
    uids = sorted(int(u) for u in uids if int(u) > sync.last_uid)
    batch = cv("FETCH_BATCH_SIZE")
    folder = mailbox.imap_folder
    max_size = cv("MAX_MESSAGE_SIZE")
    for start in range(0, len(uids), batch):
        if start and not _take_lease(sync, owner):  # renew; a long import keeps its lease
            raise MailboxConnectionError("another poller took over this mailbox")
        chunk = uids[start:start + batch]
        # UIDs already in the ledger (e.g. fetched just before a crash) are not downloaded.
        known = _known_uids(mailbox, uidvalidity, chunk)
        todo = [u for u in chunk if u not in known]
        sizes = client.fetch(todo, ["RFC822.SIZE"]) if todo else {}
        small = [u for u in todo if int(sizes.get(u, {}).get(b"RFC822.SIZE", 0)) <= max_size]
        bodies = client.fetch(small, ["BODY.PEEK[]", "INTERNALDATE"]) if small else {}
        items, data = [], None
        for uid in chunk:
            if uid in known:
                items.append((uid, None, None))
                continue
            data = bodies.pop(uid, None)
            if data is None or b"BODY[]" not in data:
                size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
                items.append((uid, _placeholder(mailbox, uid, size), None))
            else:
                items.append((uid, data[b"BODY[]"], data.get(b"INTERNALDATE")))
        bodies = data = None  # the raw bytes now live in items only
        _ingest_batch(mailbox, sync, items, result, folder=folder, uidvalidity=uidvalidity,
                      importing=importing)
        del items
        _after_fetch(client, mailbox, chunk)


def _ingest_batch(mailbox, sync, items, result: PollResult, *, folder: str,
                  uidvalidity: int, importing: bool) -> None:
    """Ingest one FETCH batch in one transaction: its messages, their ledger rows and the
    UID cursor are committed together (a crash loses at most this batch, which the next
    poll fetches again). If any message fails, the batch is rolled back and ingested again
    one message per transaction, so the failing message alone is stored raw and flagged.

    ``items`` is ``[(uid, raw or None if already in the ledger, INTERNALDATE)]``.
    """
    try:
        # Most mail is stored from its headers here; the body is parsed after the poll.
        acceptor = BatchAcceptor(mailbox, folder, uidvalidity, importing)
        acceptor.ingest_items(items)
        ingested, skipped = acceptor.ingested, acceptor.skipped
        sync.last_uid = items[-1][0]
        commit_with_files()
    except Exception:
        rollback_with_files()  # the slow path stores each message again
        log.info("a batch of %s failed; ingesting it one message per transaction",
                 mailbox.email_address, exc_info=True)
    else:
        result.uids.extend(uid for uid, _raw, _received in items)
        result.ingested += ingested
        result.skipped += skipped
        return
    _ingest_one_by_one(mailbox, sync, items, result, folder=folder, uidvalidity=uidvalidity,
                       importing=importing)


def _ingest_one_by_one(mailbox, sync, items, result: PollResult, *, folder: str,
                       uidvalidity: int, importing: bool) -> None:
    """The slow path of a failed batch: each message in its own transaction."""
    for uid, raw, received in items:
        # Advanced in the same transaction as the message (ingest commits it).
        sync.last_uid = uid
        result.uids.append(uid)
        if raw is None:
            result.skipped += 1
            continue
        message = ingest(mailbox, raw, folder=folder, uidvalidity=uidvalidity, uid=uid,
                         received_at=received, imported=importing, check_ledger=False)
        if message is None:
            result.skipped += 1
        else:
            result.ingested += 1
    sync.last_uid = items[-1][0]
    commit_with_files()


def _known_uids(mailbox, uidvalidity: int, uids: list[int]) -> set[int]:
    state = get_state()
    m = state.models
    return set(state.db.session.scalars(sa.select(m.FetchedUid.uid).where(
        m.FetchedUid.mailbox_id == mailbox.id, m.FetchedUid.folder == mailbox.imap_folder,
        m.FetchedUid.uidvalidity == uidvalidity, m.FetchedUid.uid.in_(uids))))


def _after_fetch(client, mailbox, uids: list[int]) -> None:
    """What the admin chose to do with fetched mail; only after it is safely committed."""
    try:
        _apply_after_fetch(client, mailbox, uids)
    except IMAPClientError as exc:
        what = f"move fetched mail to {mailbox.move_to_folder!r}" \
            if mailbox.after_fetch == "move" else "mark fetched mail as seen"
        raise MailboxConnectionError(f"could not {what}: {exc}") from exc


def _apply_after_fetch(client, mailbox, uids: list[int]) -> None:
    if mailbox.after_fetch == "seen":
        client.add_flags(uids, [imapclient.SEEN])
    elif mailbox.after_fetch == "move" and mailbox.move_to_folder:
        if client.has_capability("MOVE"):
            client.move(uids, mailbox.move_to_folder)
        else:
            client.copy(uids, mailbox.move_to_folder)
            client.delete_messages(uids)
            if client.has_capability("UIDPLUS"):
                client.uid_expunge(uids)
            else:
                client.expunge()


def _placeholder(mailbox, uid: int, size: int) -> bytes:
    """Stand-in for a message too large to fetch: visible, flagged, never stalling the box."""
    return (
        f"From: \"Mail server\" <mailer-daemon@invalid>\r\n"
        f"Subject: (message of {size // 1024 // 1024} MB not downloaded)\r\n"
        f"X-Shared-Inbox-Oversized: uid={uid} size={size}\r\n\r\n"
        f"A message of {size} bytes (UID {uid} in {mailbox.imap_folder}) is larger than the "
        f"configured limit and was not downloaded. Open it in your mail client.\r\n"
    ).encode()


def poll_all() -> list[PollResult]:
    """Poll every active mailbox; one failing mailbox never stops the others."""
    state = get_state()
    m = state.models
    results = []
    now = utcnow()
    ids = list(state.db.session.scalars(sa.select(m.Mailbox.id).where(
        m.Mailbox.is_active,
        sa.or_(m.Mailbox.next_poll_at.is_(None), m.Mailbox.next_poll_at <= now))))
    for mailbox_id in ids:
        mailbox = state.db.session.get(m.Mailbox, mailbox_id)
        try:
            results.append(poll_mailbox(mailbox))
        except Exception:
            state.db.session.rollback()
            log.exception("polling mailbox %s crashed", mailbox_id)
    return results
