"""IMAP IDLE: new mail shows within seconds in the worker, with polling as the fallback.

One thread per mailbox keeps a connection in IDLE and, when the server announces new
mail, runs the same ``poll_mailbox`` as the scheduler (under the same lease, so IDLE and
the periodic poll never fetch a message twice). IDLE is re-issued every few minutes because
servers and middleboxes drop quiet connections long before RFC 2177's 29 minutes.
"""
from __future__ import annotations

import logging
import selectors
import ssl
import threading
import time

import sqlalchemy as sa
from imapclient.imapclient import _parse_untagged_response
from flask import Flask

from ..extension import get_state

log = logging.getLogger("shared_inbox.idle")

REISSUE_SECONDS = 9 * 60
CHECK_SECONDS = 5
LINE_SECONDS = 30
LOCKED_WAIT_SECONDS = 120  # how long to wait for another poller of the mailbox to finish


def wait_for_idle_responses(client, timeout: float) -> list:
    """What the server announced during IDLE within ``timeout`` seconds (``[]`` if nothing).

    Why not ``IMAPClient.idle_check``: it reads lines from a non-blocking socket, so a
    response split across two TCP segments (``* 1 FETCH (`` ... ``FLAGS (\\Recent))``) is
    read half and the connection is broken (imapclient issue #519, open). Here the socket
    is only polled to learn that *something* arrived; every line is then read whole in
    blocking mode, and reading stops when nothing more is buffered or waiting.
    """
    imap = client._imap
    sock = client.socket()
    try:
        if not _data_waiting(imap, sock):
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ)
                if not selector.select(timeout):
                    return []
        responses = []
        while True:
            sock.settimeout(LINE_SECONDS)
            responses.append(_parse_untagged_response(imap._get_line()))
            if not _data_waiting(imap, sock):
                return responses
    finally:
        sock.settimeout(client._timeout.read if client._timeout is not None else None)


def _data_waiting(imap, sock) -> bool:
    """True when a byte is already buffered (by imaplib or TLS) or readable right now."""
    sock.setblocking(False)
    try:
        return bool(imap.file.peek(1))
    except (BlockingIOError, ssl.SSLWantReadError):
        return False


class IdleWatcher(threading.Thread):
    """Watches one mailbox folder with IDLE until ``stop`` is set."""

    def __init__(self, app: Flask, mailbox_id: int, stop: threading.Event):
        super().__init__(name=f"shared-inbox-idle-{mailbox_id}", daemon=True)
        self.app = app
        self.mailbox_id = mailbox_id
        self.stop_event = stop
        self.supported: bool | None = None  # None until the server has told us

    def run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                if not self._watch_once():
                    return  # the server has no IDLE: periodic polling covers this mailbox
                failures = 0
            except Exception as exc:  # connection dropped, server restarted...
                failures += 1
                log.info("IDLE on mailbox %s interrupted (%s); retrying", self.mailbox_id, exc)
                self.stop_event.wait(min(5 * 2 ** failures, 300))

    def _poll(self) -> None:
        """Poll the mailbox now. If another poller holds it, wait for it to finish and poll
        again: that poller may have searched before the new mail arrived, and the server
        will not announce mail our IDLE connection already saw when it selected the folder
        (so skipping here could leave it until the next periodic poll)."""
        from .imap import poll_mailbox

        deadline = time.monotonic() + LOCKED_WAIT_SECONDS
        while not self.stop_event.is_set():
            with self.app.app_context():
                state = get_state(self.app)
                try:
                    mailbox = state.db.session.get(state.models.Mailbox, self.mailbox_id)
                    if mailbox is None or not mailbox.is_active:
                        return
                    result = poll_mailbox(mailbox)
                finally:
                    state.db.session.remove()
            if not result.locked or time.monotonic() > deadline:
                return
            self.stop_event.wait(0.5)

    def _watch_once(self) -> bool:
        from .imap import _logout_quietly, connect, select

        with self.app.app_context():
            state = get_state(self.app)
            try:
                mailbox = state.db.session.get(state.models.Mailbox, self.mailbox_id)
                if mailbox is None or not mailbox.is_active:
                    self.stop_event.wait(60)
                    return True
                client = connect(mailbox)
                folder = mailbox.imap_folder
            finally:
                state.db.session.remove()
        try:
            self.supported = client.has_capability("IDLE")
            if not self.supported:
                return False
            select(client, folder, readonly=True)
            self._poll()  # anything that arrived before we started listening
            client.idle()
            started = time.monotonic()
            while not self.stop_event.is_set():
                responses = wait_for_idle_responses(client, CHECK_SECONDS)
                if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                    client.idle_done()
                    self._poll()
                    client.idle()
                    started = time.monotonic()
                elif time.monotonic() - started > REISSUE_SECONDS:
                    client.idle_done()
                    client.noop()
                    client.idle()
                    started = time.monotonic()
            client.idle_done()
            return True
        finally:
            _logout_quietly(client)


class Worker:
    """``flask inbox run-worker``: periodic polling of every mailbox plus IDLE watchers."""

    def __init__(self, app: Flask):
        self.app = app
        self.stop_event = threading.Event()
        self.watchers: dict[int, IdleWatcher] = {}
        self.scheduler = None

    def start(self) -> "Worker":
        from ..scheduler import make_scheduler

        self.scheduler = make_scheduler(self.app)
        self.scheduler.add_job(self.refresh_watchers, "interval", seconds=60, id="idle-watchers",
                               max_instances=1, coalesce=True)
        self.scheduler.start()
        self.refresh_watchers()
        return self

    def refresh_watchers(self) -> None:
        """One watcher per active mailbox, including mailboxes added while running."""
        with self.app.app_context():
            state = get_state(self.app)
            try:
                ids = set(state.db.session.scalars(
                    sa.select(state.models.Mailbox.id).where(state.models.Mailbox.is_active)))
            finally:
                state.db.session.remove()
        for mailbox_id in ids:
            watcher = self.watchers.get(mailbox_id)
            if watcher is None or (not watcher.is_alive() and watcher.supported is not False):
                watcher = IdleWatcher(self.app, mailbox_id, self.stop_event)
                self.watchers[mailbox_id] = watcher
                watcher.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.scheduler is not None:
            # Let a running poll finish: its connection is closed properly, nothing is cut
            # off half-way (ingestion is transactional anyway).
            self.scheduler.shutdown(wait=True)
        for watcher in self.watchers.values():
            watcher.join(timeout=CHECK_SECONDS + 5)

    def run_forever(self) -> None:
        self.start()
        try:
            while not self.stop_event.wait(1):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
