"""The worker: IMAP IDLE brings new mail in within seconds, without waiting for a poll."""
import time

import pytest
import sqlalchemy as sa

from shared_inbox.mail.devserver import DevMailServer
from shared_inbox.mail.idle import Worker
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
