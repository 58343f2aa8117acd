"""SSL and STARTTLS to a real Dovecot, and a certificate nobody vouched for."""
from datetime import timedelta

import pytest
import sqlalchemy as sa

import dovecot
from conftest import require
from shared_inbox.mail import imap
from shared_inbox.models import utcnow

pytestmark = pytest.mark.slow

ADDRESS, PASSWORD = "support@example.com", "tls-pw"


@pytest.fixture(scope="module")
def server():
    require("Dovecot (apt-get install dovecot-imapd, run as root)", dovecot.available())
    d = dovecot.Dovecot({ADDRESS: PASSWORD}, tls=True).start()
    yield d
    d.stop()


def _mailbox(host, port, security):
    with host.app.app_context():
        m = host.inbox.models
        box = m.Mailbox(name="Support", email_address=ADDRESS, imap_host="127.0.0.1",
                        imap_port=port, imap_security=security, imap_username=ADDRESS,
                        import_since=utcnow() - timedelta(days=1))
        box.imap_password = PASSWORD
        host.db.session.add(box)
        host.db.session.commit()
        return box.id


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_encrypted_connections_with_a_trusted_certificate(host, server, security, monkeypatch):
    # The server's CA is trusted the way an admin trusts a private CA: OpenSSL's
    # SSL_CERT_FILE, read by ssl.create_default_context().
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    port = server.imaps_port if security == "ssl" else server.port
    box_id = _mailbox(host, port, security)
    with host.app.app_context():
        box = host.db.session.get(host.inbox.models.Mailbox, box_id)
        assert imap.test_connection(box).startswith("connected")
        assert imap.poll_mailbox(box).error is None


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_an_untrusted_certificate_is_refused_and_explained(host, server, security):
    port = server.imaps_port if security == "ssl" else server.port
    box_id = _mailbox(host, port, security)
    with host.app.app_context():
        box = host.db.session.get(host.inbox.models.Mailbox, box_id)
        result = imap.poll_mailbox(box)
        assert result.error.startswith("certificate of 127.0.0.1 not trusted")
        box = host.db.session.scalar(sa.select(host.inbox.models.Mailbox))
        assert box.last_error == result.error
