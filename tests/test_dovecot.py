"""The poller against a production IMAP server (Debian's Dovecot), not just our dev server."""
from datetime import timedelta

import imapclient
import pytest
import sqlalchemy as sa

import dovecot
from conftest import require
from shared_inbox.mail.demo_mail import demo_messages
from shared_inbox.mail.imap import poll_mailbox
from shared_inbox.models import utcnow

pytestmark = pytest.mark.slow

ADDRESS, PASSWORD = "support@example.com", "s3cret-pw"


@pytest.fixture(scope="module")
def server():
    require("Dovecot (apt-get install dovecot-imapd, run as root)", dovecot.available())
    d = dovecot.Dovecot({ADDRESS: PASSWORD}).start()
    yield d
    d.stop()


def _append(server, raws):
    with imapclient.IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10) as c:
        c.login(ADDRESS, PASSWORD)
        for raw in raws:
            c.append("INBOX", raw)


def _clear(server):
    with imapclient.IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10) as c:
        c.login(ADDRESS, PASSWORD)
        c.select_folder("INBOX")
        uids = c.search(["ALL"])
        if uids:
            c.delete_messages(uids)
            c.expunge()


def test_dovecot_mailbox_is_ingested_once_threaded_and_left_unread(host, server):
    _clear(server)
    raws = [raw for _rcpt, raw in demo_messages()]
    _append(server, raws)
    with host.app.app_context():
        m = host.inbox.models
        mailbox = m.Mailbox(name="Support", email_address=ADDRESS, imap_host="127.0.0.1",
                            imap_port=server.port, imap_security="plain", imap_username=ADDRESS,
                            import_since=utcnow() - timedelta(days=1))
        mailbox.imap_password = PASSWORD
        host.db.session.add(mailbox)
        host.db.session.commit()

        first = poll_mailbox(mailbox)
        assert first.error is None and first.ingested == len(raws)
        assert poll_mailbox(mailbox).ingested == 0

        _append(server, [raws[0].replace(b"Message-ID: <", b"Message-ID: <again-")])
        assert poll_mailbox(mailbox).ingested == 1

        session = host.db.session
        assert session.scalar(sa.select(sa.func.count(m.Message.id))) == len(raws) + 1
        matched = session.scalars(
            sa.select(m.Message.thread_reason).where(m.Message.thread_reason.like("matched %"))).all()
        assert len(matched) >= 2
        sync = session.scalar(sa.select(m.SyncState))

    with imapclient.IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10) as c:
        c.login(ADDRESS, PASSWORD)
        info = c.select_folder("INBOX", readonly=True)
        uids = c.search(["ALL"])
        assert (sync.uidvalidity, sync.last_uid) == (info[b"UIDVALIDITY"], max(uids))
        assert all(imapclient.SEEN not in f for f in c.get_flags(uids).values())
