"""Stored IMAP/SMTP passwords and OAuth tokens never appear in plain text: not in any column of
any table, not in the SQLite file's bytes, not in any dashboard page, not in the logs.

Each secret is a distinctive string entered the way an admin would (the settings form) or the
way the OAuth flow stores it; the checks then look everywhere for it, so a new column, page or
log line that carries it fails here.
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from shared_inbox.csrf import SESSION_KEY
from shared_inbox.mail.devserver import DevMailServer
from shared_inbox.mail.imap import poll_all
from shared_inbox.mail.oauth import NeedsReauthorisation, get_access_token, set_oauth_tokens

ADDRESS = "support@example.com"
IMAP_PASSWORD = "imapPw-Zq7!unlikely-string"
SMTP_PASSWORD = "smtpPw-Xk9!unlikely-string"
WRONG_PASSWORD = "wrongPw-Jm3!unlikely-string"
REFRESH_TOKEN = "1//refresh-Tk4-unlikely-string"
ACCESS_TOKEN = "ya29.access-Ty8-unlikely-string"
CLIENT_SECRET = "client-secret-Wv2-unlikely"
SECRETS = (IMAP_PASSWORD, SMTP_PASSWORD, WRONG_PASSWORD, REFRESH_TOKEN, ACCESS_TOKEN,
           CLIENT_SECRET)


@pytest.fixture
def server():
    with DevMailServer(users={ADDRESS: IMAP_PASSWORD, "sales@example.com": "sales-pw"}) as s:
        yield s


class TokenEndpoint:
    """A token endpoint on 127.0.0.1 that refuses every grant (as after a revoked consent)."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"error": "invalid_grant",
                                   "error_description": "Token has been revoked."}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def token_endpoint():
    endpoint = TokenEndpoint()
    yield endpoint
    endpoint.close()


@pytest.fixture
def world(make_host, server, token_endpoint):
    """A password mailbox created through the settings form and an OAuth mailbox."""
    host = make_host(config={"SHARED_INBOX_OAUTH_CLIENTS": {"google": {
        "client_id": "client-1", "client_secret": CLIENT_SECRET,
        "token_url": token_endpoint.url}}})
    host.create_tables()
    client = host.app.test_client()
    admin = host.add_user("boss@x.test", role="admin")
    host.login(client, admin)
    with client.session_transaction() as sess:
        sess[SESSION_KEY] = "tok"
    form = {
        "name": "Support", "email_address": ADDRESS, "from_name": "Support",
        "signature": "", "imap_host": "127.0.0.1", "imap_port": str(server.imap_port),
        "imap_security": "plain", "imap_username": "", "imap_password": IMAP_PASSWORD,
        "imap_folder": "INBOX", "after_fetch": "leave", "move_to_folder": "",
        "smtp_host": "127.0.0.1", "smtp_port": str(server.smtp_port), "smtp_security": "plain",
        "smtp_username": "", "smtp_password": SMTP_PASSWORD, "is_active": "1",
        "import_from": "new", "import_since": "", "action": "save", "csrf_token": "tok",
    }
    r = client.post("/support/settings/mailboxes/new", data=form)
    assert r.status_code == 302, r.get_data(as_text=True)
    with host.app.app_context():
        m = host.inbox.models
        oauth = m.Mailbox(name="Sales", email_address="sales@example.com",
                          imap_host="127.0.0.1", imap_port=server.imap_port,
                          imap_security="plain", imap_username="sales@example.com",
                          auth_type="xoauth2", oauth_provider="google")
        # Expired access token: the next poll must refresh, and the endpoint refuses.
        set_oauth_tokens(oauth, REFRESH_TOKEN, ACCESS_TOKEN, 1.0)
        host.db.session.add(oauth)
        host.db.session.commit()
        ids = {"password": host.db.session.scalar(
            sa.select(m.Mailbox.id).where(m.Mailbox.email_address == ADDRESS)),
            "oauth": oauth.id}
        # The secrets really are stored (and readable by the app): the checks below are not
        # vacuous.
        mb = host.db.session.get(m.Mailbox, ids["password"])
        assert mb.imap_password == IMAP_PASSWORD and mb.smtp_password == SMTP_PASSWORD
    return host, client, ids


def secret_free(text: str) -> bool:
    return not any(secret in text for secret in SECRETS)


def _all_stored_text(host) -> str:
    """Every value of every column of every table in the database, as text."""
    chunks = []
    with host.app.app_context():
        engine = host.db.engine
        inspector = sa.inspect(engine)
        with engine.connect() as conn:
            for table in inspector.get_table_names():
                columns = [c["name"] for c in inspector.get_columns(table)]
                quoted = ", ".join(engine.dialect.identifier_preparer.quote(c) for c in columns)
                name = engine.dialect.identifier_preparer.quote(table)
                for row in conn.execute(sa.text(f"SELECT {quoted} FROM {name}")):
                    for value in row:
                        if isinstance(value, (bytes, memoryview)):
                            value = bytes(value).decode("latin-1")
                        chunks.append(str(value))
    return "\n".join(chunks)


def test_secrets_are_encrypted_in_every_column_of_every_table(world):
    host, client, ids = world
    text = _all_stored_text(host)
    assert "Support" in text  # the scan does see the rows
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} stored in plain text"


def test_the_sqlite_file_holds_no_secret_bytes(world):
    host, client, ids = world
    with host.app.app_context():
        if host.db.engine.dialect.name != "sqlite":
            pytest.skip("file bytes are checked on SQLite; PostgreSQL is checked column by column")
        path = host.db.engine.url.database
        host.db.session.remove()
        host.db.engine.dispose()
    import os
    data = b""
    for suffix in ("", "-wal", "-journal"):
        if os.path.exists(path + suffix):
            with open(path + suffix, "rb") as fh:
                data += fh.read()
    assert b"support@example.com" in data  # the file is really what we think it is
    for secret in SECRETS:
        assert secret.encode() not in data, secret
        assert secret.encode("utf-16-le") not in data, secret


def test_no_dashboard_page_shows_a_secret(world, server):
    host, client, ids = world
    pages = ["/support/", "/support/settings/", "/support/settings/mailboxes/new",
             f"/support/settings/mailboxes/{ids['password']}/edit",
             f"/support/settings/mailboxes/{ids['oauth']}/edit"]
    for url in pages:
        r = client.get(url)
        assert r.status_code == 200, url
        body = r.get_data(as_text=True)
        for secret in SECRETS:
            assert secret not in body, (url, secret)
    # A form re-shown after a validation error keeps what was typed, except the passwords.
    r = client.post(f"/support/settings/mailboxes/{ids['password']}/edit", data={
        "name": "Support", "email_address": ADDRESS, "imap_host": "127.0.0.1",
        "imap_port": "70000", "imap_security": "plain", "imap_password": WRONG_PASSWORD,
        "smtp_password": WRONG_PASSWORD, "action": "save", "csrf_token": "tok"})
    assert r.status_code == 400
    assert WRONG_PASSWORD not in r.get_data(as_text=True)
    # "Test connection" with the stored (right) password: the flash message names no secret.
    r = client.post(f"/support/settings/mailboxes/{ids['password']}/test",
                    data={"csrf_token": "tok"}, follow_redirects=True)
    for secret in SECRETS:
        assert secret not in r.get_data(as_text=True)


def test_failing_logins_log_and_record_no_secret(world, caplog):
    """A poll where the IMAP login is refused (wrong stored password) and the OAuth refresh is
    refused: every log record at DEBUG, and the error stored on the mailbox, name no secret."""
    host, client, ids = world
    with host.app.app_context():
        mb = host.db.session.get(host.inbox.models.Mailbox, ids["password"])
        mb.imap_password = WRONG_PASSWORD
        host.db.session.commit()
    caplog.set_level(logging.DEBUG)
    with host.app.app_context():
        results = {r.mailbox: r for r in poll_all()}
        # The dev server offers no XOAUTH2, so refresh the expired token directly too: the
        # token endpoint refuses the grant.
        oauth = host.db.session.get(host.inbox.models.Mailbox, ids["oauth"])
        with pytest.raises(NeedsReauthorisation) as refused:
            get_access_token(oauth)
        host.db.session.commit()
    assert results[ADDRESS].error and results["sales@example.com"].error
    assert secret_free(str(refused.value))
    # The development IMAP server (pymap) logs what it receives, LOGIN included: that is the
    # server's side of the wire, not ours. Everything on the client side counts, including
    # imapclient's own protocol trace at DEBUG.
    ours = [r for r in caplog.records if not r.name.startswith(("pymap", "mail.log", "aiosmtpd"))]
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in ours)
    assert any(r.name.startswith("imapclient") for r in ours)  # the trace was captured
    assert any(r.name.startswith("shared_inbox") for r in ours)  # the failures were logged
    for secret in SECRETS:
        assert secret not in logged, secret
        assert secret not in str(results[ADDRESS].error) + str(results["sales@example.com"].error)
    page = client.get("/support/settings/").get_data(as_text=True)
    for secret in SECRETS:
        assert secret not in page
    text = _all_stored_text(host)  # last_error and friends
    for secret in SECRETS:
        assert secret not in text, secret
