"""The worker: IMAP IDLE brings new mail in within seconds, without waiting for a poll."""
import socket
import threading
import time

import pytest
import sqlalchemy as sa

from shared_inbox.mail.devserver import DevMailServer
from imapclient import IMAPClient

from shared_inbox.mail.idle import Worker, wait_for_idle_responses
from test_poll import add_mailbox, mail


@pytest.fixture
def mail_server():
    with DevMailServer(users={"support@example.com": "support"}) as server:
        yield server


def _subjects(host):
    with host.app.app_context():
        m = host.inbox.models
        try:
            return host.db.session.scalars(sa.select(m.Ticket.subject).order_by(m.Ticket.id)).all()
        finally:
            host.db.session.remove()


def _wait_for(predicate, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_idle_delivers_new_mail_without_waiting_for_the_poll_interval(make_host, mail_server):
    # Polling only once an hour: anything arriving quickly came through IDLE.
    host = make_host(config={"SHARED_INBOX_POLL_INTERVAL": 3600})
    host.create_tables()
    mail_server.deliver("support@example.com", mail("Before the worker started"))
    add_mailbox(host, mail_server, "support@example.com")
    worker = Worker(host.app).start()
    try:
        assert _wait_for(lambda: _subjects(host) == ["Before the worker started"])
        mail_server.deliver("support@example.com", mail("Pushed by IDLE"))
        assert _wait_for(lambda: _subjects(host) == ["Before the worker started", "Pushed by IDLE"])
        assert all(w.supported for w in worker.watchers.values())
    finally:
        worker.stop()
    assert not any(w.is_alive() for w in worker.watchers.values())


def test_mail_waiting_while_another_poller_holds_the_mailbox_is_fetched_when_it_lets_go(
        make_host, mail_server):
    """The IDLE connection selects the folder with the mail already in it, so the server
    will never announce it; the watcher's first poll finds the mailbox held by another
    poller (which may have searched before the mail came). It must wait and poll again,
    not leave the mail until the next periodic poll (an hour here)."""
    from datetime import timedelta

    from shared_inbox.models import utcnow

    host = make_host(config={"SHARED_INBOX_POLL_INTERVAL": 3600})
    host.create_tables()
    mail_server.deliver("support@example.com", mail("Arrived during another poll"))
    box = add_mailbox(host, mail_server, "support@example.com")
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.add(m.SyncState(mailbox_id=box, folder="INBOX", last_uid=0,
                                        lease_owner="elsewhere:1:1",
                                        lease_until=utcnow() + timedelta(seconds=3)))
        host.db.session.commit()
    worker = Worker(host.app).start()
    try:
        assert _wait_for(lambda: _subjects(host) == ["Arrived during another poll"])
    finally:
        worker.stop()

class _SplittingIMAPServer(threading.Thread):
    """A loopback IMAP server that sends an IDLE response in two TCP segments, 300 ms apart.

    Servers and networks split responses anywhere; imapclient's own ``idle_check`` reads
    such a response half and breaks the connection (imapclient issue #519).
    """

    def __init__(self):
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.commands = []

    def run(self):
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"* OK ready\r\n")
            idle_tag = None
            for line in lines:
                words = line.split()
                self.commands.append(words[-1] if words == [b"DONE"] else words[1])
                if words == [b"DONE"]:
                    conn.sendall(idle_tag + b" OK IDLE terminated\r\n")
                elif words[1] == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + words[0] + b" OK done\r\n")
                elif words[1] == b"IDLE":
                    idle_tag = words[0]
                    conn.sendall(b"+ idling\r\n")
                    time.sleep(0.2)
                    conn.sendall(b"* 1 FETCH (")
                    time.sleep(0.3)
                    conn.sendall(b"FLAGS (\\Recent))\r\n* 2 EXISTS\r\n")
                elif words[1] == b"LOGOUT":
                    conn.sendall(b"* BYE bye\r\n" + words[0] + b" OK LOGOUT completed\r\n")
                    return


def test_idle_response_split_across_tcp_segments_is_read_whole():
    server = _SplittingIMAPServer()
    server.start()
    client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10)
    client.idle()
    responses = []
    deadline = time.monotonic() + 5
    while not any(r[1] == b"EXISTS" for r in responses) and time.monotonic() < deadline:
        responses += wait_for_idle_responses(client, 1)
    assert (1, b"FETCH", (b"FLAGS", (b"\\Recent",))) in responses
    assert (2, b"EXISTS") in responses
    client.idle_done()           # the connection is still in step with the server
    assert server.commands == [b"CAPABILITY", b"IDLE", b"DONE"]
    client.logout()
    server.join(5)
    server.listener.close()


def test_waiting_for_idle_responses_returns_nothing_when_the_server_is_quiet(mail_server):
    client = IMAPClient("127.0.0.1", port=mail_server.imap_port, ssl=False, timeout=10)
    client.login("support@example.com", "support")
    client.select_folder("INBOX")
    client.idle()
    assert wait_for_idle_responses(client, 0.5) == []
    mail_server.deliver("support@example.com", mail("Arrives while idling"))
    responses = []
    deadline = time.monotonic() + 5
    while not any(r[1] == b"EXISTS" for r in responses) and time.monotonic() < deadline:
        responses += wait_for_idle_responses(client, 1)
    client.idle_done()
    assert any(r[1] == b"EXISTS" for r in responses), responses
    client.logout()
