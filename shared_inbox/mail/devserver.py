"""A throw-away IMAP + SMTP mail server for the demo and the test-suite.

Why this exists: shared_inbox polls IMAP mailboxes and sends replies over
SMTP.  Exercising that against mocks proves little, and asking every
developer (or CI job) to install and configure a real MTA/IMAP server makes
the demo and the fast unit tests fragile.  ``DevMailServer`` gives both a
real wire-protocol server in a few milliseconds, inside the current process.

IMAP server choice: **pymap** (pure-Python asyncio IMAP4rev1 server).

* Pure Python, installable from PyPI: no root, no system packages, no config
  files, nothing to clean up.
* Runs in-process on our own event loop (one background thread), so start-up
  is a few milliseconds and a test can start/stop one per module.
* Speaks the extensions the poller relies on: IDLE, UIDPLUS (APPENDUID /
  UID EXPUNGE), MOVE, MULTIAPPEND, OBJECTID.
* Its in-memory ``dict`` backend stores every message byte-for-byte and
  implements COPY/MOVE/EXPUNGE/flags correctly.  (pymap's on-disk
  ``maildir`` backend was rejected: in 0.36 it stores messages through
  :mod:`mailbox`, which turns CRLF into LF and re-folds long headers, and
  its COPY writes empty messages.)  Persistence for the demo is therefore
  our own small snapshot of the dict backend, see :class:`DevMailServer`.

Dovecot is still used separately, in the ``slow`` integration tests, to check
behaviour against a production-grade server; pymap is for speed and
convenience, not as the reference implementation.

SMTP is aiosmtpd's ``SMTP`` protocol.  We run it on the *same* event loop as
pymap rather than through ``aiosmtpd.controller.Controller``: the Controller
cannot bind port 0 (it connects to itself to check readiness), costs an
extra thread, and would need a cross-thread hop to deliver into pymap.  On a
shared loop, binding port 0 is race-free and delivery is a direct call into
pymap's backend, exactly like an IMAP ``APPEND``.

Security: plain-text LOGIN, no TLS, cleartext passwords -- so the server
refuses to listen on anything but a loopback address.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import BytesHeaderParser
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, \
    Session as SMTPSession
from proxyprotocol.reader import ProxyProtocolReader
from proxyprotocol.version import ProxyProtocolVersion
from pysasl.hashing import Cleartext

from pymap.backend.dict import Config as _DictConfig, DictBackend, \
    Identity as _DictIdentity, Login as _DictLogin
from pymap.backend.dict.filter import FilterSet as _DictFilterSet
from pymap.backend.dict.mailbox import MailboxData as _DictMailboxData, \
    MailboxSet as _DictMailboxSet
from pymap.concurrent import Subsystem
from pymap.exceptions import MailboxNotFound
from pymap.imap import IMAPServer
from pymap.parsing.message import AppendMessage
from pymap.parsing.specials import ExtensionOptions, Flag, ObjectId
from pymap.user import UserMetadata

from .net import is_loopback

__all__ = ["DEFAULT_USERS", "DevMailServer", "SentMessage", "main"]

_log = logging.getLogger(__name__)

#: The three shop mailboxes used by the demo, login address -> password.
DEFAULT_USERS: Mapping[str, str] = {
    "support@example.com": "support",
    "sales@example.com": "sales",
    "billing@example.com": "billing",
}

#: Folders every user gets besides INBOX; clients file sent replies here.
EXTRA_FOLDERS = ("Sent",)

_SERVER_NAME = "localhost"


@dataclass
class SentMessage:
    """One message accepted by the SMTP side (what the app "sent").

    ``data`` is the DATA payload exactly as received (after SMTP
    dot-unstuffing); ``delivered_to`` lists the known users whose INBOX also
    received it -- empty means the mail was only captured.  ``auth_login``
    is the user that authenticated with SMTP AUTH, or None.
    """

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    delivered_to: list[str] = field(default_factory=list)
    auth_login: str | None = None
    received_at: datetime = field(
        default_factory=lambda: datetime.now(timezone.utc))


# --- pymap configuration ---------------------------------------------------
#
# pymap is normally configured from argparse; we build the config objects
# directly so nothing reads sys.argv, no thread pools are created behind our
# back (they would leak threads) and nothing blocks on DNS.

class _DevConfigMixin:
    """Overrides that make pymap suitable for an in-process test server."""

    @property
    def greeting(self) -> bytes:
        # The default calls socket.getfqdn() for *every* connection, which
        # can stall for seconds on a machine without working DNS.
        return b"Server ready " + _SERVER_NAME.encode("ascii")


class _DevDictConfig(_DevConfigMixin, _DictConfig):
    pass


def _config_kwargs(host: str, port: int) -> dict[str, Any]:
    args = argparse.Namespace(passlib_cfg=None, proxy_protocol=None,
                              inherited_sockets=None, debug=False)
    return dict(
        args=args, host=host, port=port,
        # LOGIN without STARTTLS: we have no certificate, and this is loopback.
        tls_enabled=False,
        # Cleartext "hashes": pysasl's default PBKDF2 (500k rounds) would make
        # every login in the test-suite cost ~0.3 s for no benefit.
        hash_context=Cleartext(),
        # Everything on our one event loop -> no executor threads to leak.
        subsystem=Subsystem.for_asyncio(),
        cpu_subsystem=Subsystem.for_asyncio(),
        proxy_protocol=ProxyProtocolVersion.get(None),
        invalid_user_sleep=0.05,
        reject_dnsbl=False,
    )


class DevMailServer:
    """In-process IMAP (pymap) + SMTP (aiosmtpd) server on loopback.

    Both servers share one asyncio loop running in a daemon thread; every
    public method is safe to call from any other thread.

    Storage: mailboxes live in pymap's in-memory ``dict`` backend.  Without
    ``data_dir`` they vanish on :meth:`stop` -- ideal for tests.  With
    ``data_dir`` the mail store is snapshotted to disk (see
    :class:`_MailStore`) shortly after every change and on :meth:`stop`,
    and restored on :meth:`start` with the *same* UIDs, UIDVALIDITY,
    flags, INTERNALDATEs and folders, so a restarted demo does not make the
    poller think every mailbox was recreated.  A hard kill can lose the
    last ~0.5 s of changes.  Passwords are never written to disk (they come
    from ``users`` on each start); stored mail of users no longer listed is
    kept on disk but not served.

    ``sent`` (captured SMTP traffic) is always in memory only.
    """

    def __init__(self, host: str = "127.0.0.1", imap_port: int = 0,
                 smtp_port: int = 0, users: Mapping[str, str] | None = None,
                 data_dir: str | os.PathLike[str] | None = None) -> None:
        if not is_loopback(host):
            raise ValueError(
                f"DevMailServer only listens on loopback, not {host!r}: it "
                "uses plain-text logins and cleartext passwords")
        self.host = host
        self.imap_port = imap_port
        self.smtp_port = smtp_port
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None
                                          else users)
        self.data_dir = os.fspath(data_dir) if data_dir is not None else None
        #: Every message accepted over SMTP, in arrival order.
        self.sent: list[SentMessage] = []
        self._sent_cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stop_error: BaseException | None = None
        self._backend: DictBackend | None = None
        self._store = _MailStore(self.data_dir) if self.data_dir else None
        self._smtp_protocols: set[SMTP] = set()
        # Lower-cased address -> login name as given, for RCPT matching.
        self._by_address = {addr.lower(): addr for addr in self.users}

    # --- lifecycle ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> DevMailServer:
        """Start both servers; return once both accept connections.

        Returns ``self`` so ``server = DevMailServer().start()`` works.
        """
        if self._thread is not None:
            raise RuntimeError("DevMailServer already started")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(
            target=self._thread_main, name="DevMailServer", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError("DevMailServer did not start in time")
        if self._startup_error is not None:
            error = self._startup_error
            self._thread.join(timeout)
            self._thread = None
            raise error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close listeners and client connections, stop the loop thread.

        Idempotent.  Ports are released when this returns, so a restart on
        the same ports (persistence tests, the demo) works immediately.
        """
        thread = self._thread
        if thread is None:
            return
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None:
            with suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("DevMailServer thread did not stop")
        self._thread = None
        error, self._stop_error = self._stop_error, None
        if error is not None:  # e.g. the final save to data_dir failed
            raise RuntimeError("DevMailServer did not stop cleanly") \
                from error

    def __enter__(self) -> DevMailServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # report to start()/stop()
            if not self._ready.is_set():
                self._startup_error = exc
            else:
                self._stop_error = exc
        finally:
            self._loop = None
            self._stop_event = None
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        backend = await self._create_backend()
        # pymap reads its concurrency subsystem from a context variable; the
        # listeners below capture this context for their connection tasks.
        backend.config.apply_context()
        self._backend = backend
        if self._store is not None:
            await self._store.restore(backend.config, self.users)
        for address, password in self.users.items():
            await self._provision(address, password)
        if self._store is not None:
            self._store.save(backend.config)

        servers: list[asyncio.Server] = []
        saver = None
        try:
            imap_cb = ProxyProtocolReader(backend.config.proxy_protocol) \
                .get_callback(IMAPServer(backend.login, backend.config))
            imap = await asyncio.start_server(imap_cb, self.host,
                                              self.imap_port)
            servers.append(imap)
            smtp = await self._loop.create_server(
                self._smtp_factory, self.host, self.smtp_port)
            servers.append(smtp)
            self.imap_port = imap.sockets[0].getsockname()[1]
            self.smtp_port = smtp.sockets[0].getsockname()[1]
            if self._store is not None:
                saver = asyncio.create_task(self._autosave(backend.config))
            self._ready.set()
            await self._stop_event.wait()
        finally:
            if saver is not None:
                saver.cancel()
            for server in servers:
                server.close()
            for proto in list(self._smtp_protocols):
                if proto.transport is not None:
                    proto.transport.close()
            for server in servers:
                await server.wait_closed()
            # Let pymap connection handlers notice EOF / cancellation and
            # close their writers; asyncio.run() cancels anything left over.
            await self._cancel_connections()
            self._backend = None
            if self._store is not None:
                self._store.save(backend.config)  # errors reach stop()

    async def _autosave(self, config: _DevDictConfig) -> None:
        assert self._store is not None
        while True:
            await asyncio.sleep(0.5)
            try:
                self._store.save(config)
            except Exception:  # keep serving; the save in stop() retries
                _log.exception("DevMailServer could not save %s",
                               self.data_dir)

    async def _cancel_connections(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        # One more turn so transports finish their close callbacks.
        await asyncio.sleep(0)

    async def _create_backend(self) -> DictBackend:
        kwargs = _config_kwargs(self.host, self.imap_port)
        args = kwargs.pop("args")
        config = _DevDictConfig(args, demo_data=False, demo_user="",
                                demo_password="", **kwargs)
        return DictBackend(_DictLogin(config), config)

    def _identity(self, name: str, roles: Iterable[str] = ()) \
            -> _DictIdentity:
        backend = self._backend
        assert backend is not None, "server is not running"
        return _DictIdentity(name, backend.login, None, frozenset(roles))

    async def _provision(self, address: str, password: str) -> None:
        """Create (or update the password of) a user and its folders."""
        assert self._backend is not None
        identity = self._identity(address, roles={"admin"})
        await identity.set(UserMetadata(self._backend.config, address,
                                        password=password))
        async with identity.new_session() as session:
            for name in ("INBOX", *EXTRA_FOLDERS):
                try:
                    await session.get_mailbox(name)
                except MailboxNotFound:
                    await session.create_mailbox(name)
                await session.subscribe(name)

    # --- delivery ----------------------------------------------------------

    def _resolve(self, address: str) -> str | None:
        """Map an address (any case, with or without display name) to a
        login name, or None if it is not one of our users."""
        addr = parseaddr(address)[1] or address
        return self._by_address.get(addr.strip().lower())

    async def _append(self, login: str, raw: bytes, mailbox: str,
                      flags: Iterable[str], when: datetime | None) -> int:
        # Same code path as an IMAP APPEND, so selected/IDLE-ing clients are
        # notified and the message gets \Recent like real new mail.
        message = AppendMessage(
            bytes(raw), when or datetime.now(timezone.utc),
            frozenset(Flag(f.encode("ascii")) for f in flags),
            ExtensionOptions.empty())
        async with self._identity(login).new_session() as session:
            append_uid, _ = await session.append_messages(mailbox, [message])
        return next(iter(append_uid.uids))

    def deliver(self, address: str, raw: bytes, *, mailbox: str = "INBOX",
                flags: Iterable[str] = (), when: datetime | None = None,
                timeout: float = 10.0) -> int:
        """Append ``raw`` to a user's mailbox without going through SMTP.

        Lets tests (and the demo seeder) drop in exact bytes quickly.
        Returns the new UID (what APPENDUID would report).  ``when`` sets
        INTERNALDATE (default: now); ``flags`` e.g. ``["\\\\Seen"]``.
        Raises ``KeyError`` for an address that is not a user.
        """
        login = self._resolve(address)
        if login is None:
            raise KeyError(f"{address!r} is not a DevMailServer user")
        return self._run(self._append(login, raw, mailbox, flags, when),
                         timeout)

    def message_count(self, address: str, mailbox: str = "INBOX") -> int:
        """Number of messages in a user's mailbox (for seeding decisions)."""
        login = self._resolve(address)
        if login is None:
            raise KeyError(f"{address!r} is not a DevMailServer user")

        async def count() -> int:
            async with self._identity(login).new_session() as session:
                snapshot, _ = await session.get_mailbox(mailbox)
                return snapshot.exists
        return self._run(count(), 10.0)

    def _run(self, coro: Any, timeout: float) -> Any:
        loop = self._loop
        if loop is None or not self._ready.is_set():
            coro.close()
            raise RuntimeError("DevMailServer is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    # --- SMTP --------------------------------------------------------------

    def _smtp_factory(self) -> SMTP:
        proto = _TrackedSMTP(
            _SMTPHandler(self), hostname=_SERVER_NAME,
            ident="DevMailServer", enable_SMTPUTF8=True,
            data_size_limit=None, loop=self._loop,
            # AUTH is offered without TLS (loopback only) but not required,
            # so the app's "SMTP with login" code path can be exercised too.
            authenticator=self._smtp_authenticate, auth_require_tls=False)
        proto.devserver = self
        return proto

    def _smtp_authenticate(self, server: SMTP, session: SMTPSession,
                           envelope: Envelope, mechanism: str,
                           auth_data: Any) -> AuthResult:
        """SMTP AUTH PLAIN/LOGIN with the same credentials as IMAP."""
        if isinstance(auth_data, LoginPassword):
            login = self._resolve(auth_data.login.decode("utf-8", "replace"))
            password = auth_data.password.decode("utf-8", "replace")
            if login is not None and self.users[login] == password:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    async def _on_smtp_message(self, session: SMTPSession,
                               envelope: Envelope) -> None:
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):  # only if decode_data were enabled
            data = data.encode("utf-8", "surrogateescape")
        record = SentMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos), data=data,
            auth_login=session.auth_data if session.authenticated else None)
        for rcpt in envelope.rcpt_tos:
            login = self._resolve(rcpt)
            if login is not None and login not in record.delivered_to:
                await self._append(login, data, "INBOX", (), None)
                record.delivered_to.append(login)
        with self._sent_cond:
            self.sent.append(record)
            self._sent_cond.notify_all()

    def wait_for_sent(self, count: int, timeout: float = 5) \
            -> list[SentMessage]:
        """Block until ``sent`` holds at least ``count`` messages.

        SMTP clients get their 250 before other threads look, so tests use
        this instead of sleeping.  Returns a snapshot copy; raises
        ``TimeoutError`` if the count is not reached in time.
        """
        with self._sent_cond:
            if not self._sent_cond.wait_for(lambda: len(self.sent) >= count,
                                            timeout):
                raise TimeoutError(
                    f"expected {count} sent message(s), got {len(self.sent)}")
            return list(self.sent)

    def clear_sent(self) -> None:
        """Forget captured SMTP messages (between tests)."""
        with self._sent_cond:
            self.sent.clear()


class _MailStore:
    """Snapshot persistence for pymap's in-memory ``dict`` backend.

    Why not pymap's maildir backend: see the module docstring.  Layout of
    ``data_dir``:

    * ``mailstore.json`` -- per user, per folder: UIDVALIDITY, UIDNEXT,
      mailbox id, subscription, and for each message its UID, INTERNALDATE,
      flags and blob name.  Rewritten atomically (tmp file + rename).
    * ``blobs/<sha256>.eml`` -- the raw message bytes, exactly as received,
      written once (content-addressed) and removed when unreferenced.

    Restoring replays each message through ``MailboxData.append`` after
    pinning the mailbox's next UID, which reaches into pymap's private
    attributes (``_max_uid``, ``_uid_validity``, ``_mailbox_id``, ``_inbox``,
    ``_set``, ``_subscribed``, ``_mod_sequences``).  That is acceptable for
    a dev tool pinned to pymap 0.36.x and covered by tests; a pymap upgrade
    that renames them fails loudly in ``tests/test_devserver.py``.
    """

    VERSION = 1

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.index_path = os.path.join(data_dir, "mailstore.json")
        self.blob_dir = os.path.join(data_dir, "blobs")
        self._other_users: dict[str, Any] = {}
        self._last_token: Any = None

    # -- load ---------------------------------------------------------------

    def _read_index(self) -> dict[str, Any]:
        try:
            with open(self.index_path, encoding="utf-8") as fh:
                index = json.load(fh)
        except FileNotFoundError:
            return {"version": self.VERSION, "users": {}}
        if index.get("version") != self.VERSION:
            raise ValueError(f"{self.index_path}: unsupported version "
                             f"{index.get('version')!r}")
        return index

    async def restore(self, config: _DevDictConfig,
                      users: Mapping[str, str]) -> None:
        os.makedirs(self.blob_dir, exist_ok=True)
        stored = self._read_index()["users"]
        self._other_users = {name: data for name, data in stored.items()
                             if name not in users}
        for name, data in stored.items():
            if name in users:
                config.set_cache[name] = (await self._restore_user(data),
                                          _DictFilterSet())
        self._last_token = None

    async def _restore_user(self, data: Mapping[str, Any]) \
            -> _DictMailboxSet:
        mailbox_set = _DictMailboxSet()
        for name, mbx_data in data["mailboxes"].items():
            if name != "INBOX":
                await mailbox_set.add_mailbox(name)
            mbx = await mailbox_set.get_mailbox(name)
            await self._restore_mailbox(mbx, mbx_data)
        for name in data.get("subscribed", []):
            await mailbox_set.set_subscribed(name, True)
        return mailbox_set

    async def _restore_mailbox(self, mbx: _DictMailboxData,
                               data: Mapping[str, Any]) -> None:
        mbx._uid_validity = int(data["uidvalidity"])
        mbx._mailbox_id = ObjectId(data["mailbox_id"].encode("ascii"))
        for item in sorted(data["messages"], key=lambda m: m["uid"]):
            with open(os.path.join(self.blob_dir, item["blob"] + ".eml"),
                      "rb") as fh:
                raw = fh.read()
            mbx._max_uid = int(item["uid"]) - 1  # append() uses max + 1
            await mbx.append(AppendMessage(
                raw, datetime.fromisoformat(item["internal_date"]),
                frozenset(Flag(f.encode("ascii")) for f in item["flags"]),
                ExtensionOptions.empty()), recent=False)
        mbx._max_uid = max(mbx._max_uid, int(data["uidnext"]) - 1)

    # -- save ---------------------------------------------------------------

    @staticmethod
    def _mailboxes(mailbox_set: _DictMailboxSet) \
            -> list[tuple[str, _DictMailboxData]]:
        return [("INBOX", mailbox_set._inbox), *mailbox_set._set.items()]

    def _token(self, config: _DevDictConfig) -> Any:
        """Cheap fingerprint of everything we persist: any APPEND, flag
        change, EXPUNGE, COPY/MOVE, folder or subscription change alters a
        mod-sequence, UID or name listed here."""
        return tuple(
            (user, tuple(sorted(mailbox_set._subscribed.items())),
             tuple((name, id(mbx), mbx._mod_sequences.highest, mbx._max_uid)
                   for name, mbx in self._mailboxes(mailbox_set)))
            for user, (mailbox_set, _) in sorted(config.set_cache.items()))

    def save(self, config: _DevDictConfig) -> None:
        """Write the snapshot if anything changed since the last one.

        Runs on the event loop thread, so it sees a consistent state (no
        awaits while collecting) without taking pymap's locks.
        """
        token = self._token(config)
        if token == self._last_token:
            return
        os.makedirs(self.blob_dir, exist_ok=True)
        users: dict[str, Any] = dict(self._other_users)
        referenced: set[str] = set()
        for user, (mailbox_set, _) in config.set_cache.items():
            mailboxes = {}
            for name, mbx in self._mailboxes(mailbox_set):
                messages = []
                for msg in mbx._messages.values():
                    raw = bytes(msg._content)
                    blob = hashlib.sha256(raw).hexdigest()
                    if blob not in referenced:
                        referenced.add(blob)
                        self._write_blob(blob, raw)
                    messages.append({
                        "uid": msg.uid,
                        "internal_date": msg.internal_date.isoformat(),
                        "flags": sorted(bytes(f).decode("ascii")
                                        for f in msg.permanent_flags),
                        "blob": blob})
                mailboxes[name] = {
                    "uidvalidity": mbx.uid_validity,
                    "uidnext": mbx._max_uid + 1,
                    "mailbox_id": mbx.mailbox_id.value.decode("ascii"),
                    "messages": messages}
            users[user] = {
                "subscribed": sorted(name for name, sub in
                                     mailbox_set._subscribed.items() if sub),
                "mailboxes": mailboxes}
        for data in self._other_users.values():
            for mbx_data in data["mailboxes"].values():
                referenced.update(m["blob"] for m in mbx_data["messages"])
        tmp = self.index_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"version": self.VERSION, "users": users}, fh,
                      indent=1, sort_keys=True)
        os.replace(tmp, self.index_path)
        for filename in os.listdir(self.blob_dir):
            if filename.removesuffix(".eml") not in referenced:
                with suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.blob_dir, filename))
        self._last_token = token

    def _write_blob(self, blob: str, raw: bytes) -> None:
        path = os.path.join(self.blob_dir, blob + ".eml")
        if os.path.exists(path):
            return
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, path)


class _TrackedSMTP(SMTP):
    """aiosmtpd protocol that registers itself so stop() can close it."""

    devserver: DevMailServer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.devserver._smtp_protocols.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.devserver._smtp_protocols.discard(self)
        super().connection_lost(exc)


class _SMTPHandler:
    """Accepts every message: records it, delivers to local users only."""

    def __init__(self, server: DevMailServer) -> None:
        self.server = server

    async def handle_DATA(self, server: SMTP, session: SMTPSession,
                          envelope: Envelope) -> str:
        try:
            await self.server._on_smtp_message(session, envelope)
        except Exception:
            _log.exception("DevMailServer failed to store a message")
            return "451 Requested action aborted: local error in processing"
        return "250 Message accepted for delivery"


# --- CLI -------------------------------------------------------------------

def _parse_user(value: str) -> tuple[str, str]:
    address, sep, password = value.partition(":")
    if not sep or not address or not password:
        raise argparse.ArgumentTypeError("expected ADDRESS:PASSWORD")
    return address, password


def main(argv: list[str] | None = None) -> int:
    """Run the dev server in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m shared_inbox.mail.devserver",
        description="Local IMAP (pymap) + SMTP (aiosmtpd) development "
                    "mail server on 127.0.0.1.")
    parser.add_argument("--imap-port", type=int, default=1143,
                        help="IMAP port, 0 for any free port")
    parser.add_argument("--smtp-port", type=int, default=1025,
                        help="SMTP port, 0 for any free port")
    parser.add_argument("--data-dir", default=None,
                        help="keep mailboxes (UIDs, flags, folders) on disk "
                             "here across restarts; default: in memory only")
    parser.add_argument("--user", action="append", type=_parse_user,
                        metavar="ADDRESS:PASSWORD",
                        help="mailbox user (repeatable); default: "
                             + ", ".join(f"{a}:{p}"
                                         for a, p in DEFAULT_USERS.items()))
    parser.add_argument("--seed-demo", action="store_true",
                        help="deliver the demo customer emails into empty "
                             "INBOXes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    server = DevMailServer(imap_port=args.imap_port, smtp_port=args.smtp_port,
                           users=dict(args.user) if args.user else None,
                           data_dir=args.data_dir)
    started = time.perf_counter()
    server.start()
    elapsed = (time.perf_counter() - started) * 1000
    try:
        if args.seed_demo:
            from .demo_mail import demo_messages
            seeded = 0
            empty = {a for a in server.users if server.message_count(a) == 0}
            for rcpt, raw in demo_messages():
                if server._resolve(rcpt) in empty:
                    # INTERNALDATE = Date header, as if it arrived back then.
                    date = BytesHeaderParser().parsebytes(raw)["Date"]
                    server.deliver(rcpt, raw, when=parsedate_to_datetime(date))
                    seeded += 1
            print(f"Seeded {seeded} demo message(s).")
        print(f"IMAP  {server.host}:{server.imap_port}  (plain LOGIN, no TLS)")
        print(f"SMTP  {server.host}:{server.smtp_port}  (AUTH optional; "
              "local users get the mail, everything else is only captured)")
        print(f"Storage: {server.data_dir or 'in memory'}; "
              f"started in {elapsed:.0f} ms")
        print("Users:")
        for address, password in server.users.items():
            print(f"  {address}  password: {password}")
        # Ctrl-C and SIGTERM only set an event (installed before saying "Press Ctrl-C", so
        # an early signal cannot interrupt anything half-way); the server then stops cleanly.
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
