"""OAuth2 (XOAUTH2) sign-in for IMAP and SMTP against real servers on 127.0.0.1.

A local OAuth2 server plays Google's / Microsoft's token endpoint (refresh_token grant) and
the introspection endpoint a real Dovecot asks whether an access token is valid; an aiosmtpd
server accepts AUTH XOAUTH2 for the tokens it issued. Nothing in shared_inbox is mocked.
"""
from __future__ import annotations

import base64
import json
import secrets
import smtplib
import socket
import threading
import time
import urllib.parse
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import imapclient
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

import dovecot
from conftest import require
from shared_inbox.mail.oauth import (
    MICROSOFT_SCOPE, NeedsReauthorisation, OAuthConfigError, OAuthError,
    TokenEndpointUnavailable, get_access_token, imap_login, read_oauth_tokens,
    set_oauth_tokens, smtp_login, _token_request,
)

ADDRESS = "support@example.com"
PASSWORD = "s3cret-pw"
CLIENT_ID, CLIENT_SECRET = "client-123", "client-secret-456"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a local OAuth2 provider -------------------------------------------------------------
class OAuthServer:
    """Token endpoint (refresh_token grant) and RFC 7662-style introspection endpoint."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                status, payload = server.handle(self.path, form, dict(self.headers))
                self._reply(status, payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def reset(self) -> None:
        with self.lock:
            self.refresh_tokens: dict[str, str] = {}   # refresh token -> user
            self.access_tokens: dict[str, dict] = {}   # access token -> {user, active}
            self.token_requests: list[dict] = []
            self.introspections: list[str] = []
            self.rotate = False          # answer with a new refresh token (Microsoft)
            self.issue_inactive = False  # tokens it issues are then rejected by the servers
            self.expires_in = 3600

    def start(self) -> "OAuthServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # helpers for tests
    def grant(self, user: str) -> str:
        token = "rt-" + secrets.token_urlsafe(16)
        self.refresh_tokens[token] = user
        return token

    def issue(self, user: str, active: bool = True) -> str:
        token = "at-" + secrets.token_urlsafe(16)
        self.access_tokens[token] = {"user": user, "active": active}
        return token

    def expire(self, token: str) -> None:
        self.access_tokens[token]["active"] = False

    def is_valid(self, token: str, user: str | None = None) -> bool:
        info = self.access_tokens.get(token)
        return bool(info and info["active"] and (user is None or info["user"] == user))

    # endpoints
    def handle(self, path: str, form: dict, headers: dict) -> tuple[int, dict]:
        with self.lock:
            if path.startswith("/token"):
                self.token_requests.append({"path": path, **form})
                if form.get("grant_type") != "refresh_token":
                    return 400, {"error": "unsupported_grant_type"}
                if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID,
                                                                          CLIENT_SECRET):
                    return 401, {"error": "invalid_client"}
                user = self.refresh_tokens.get(form.get("refresh_token", ""))
                if user is None:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "Token has been expired or revoked."}
                payload = {"access_token": self.issue(user, active=not self.issue_inactive),
                           "expires_in": self.expires_in, "token_type": "Bearer"}
                if self.rotate:
                    del self.refresh_tokens[form["refresh_token"]]
                    payload["refresh_token"] = self.grant(user)
                return 200, payload
            if path.startswith("/introspect"):
                token = form.get("token", "")
                self.introspections.append(token)
                info = self.access_tokens.get(token)
                if not info or not info["active"]:
                    return 200, {"active": "false"}
                return 200, {"active": "true", "username": info["user"]}
            return 404, {"error": "not_found"}


@pytest.fixture(scope="module")
def oauth_server():
    server = OAuthServer().start()
    yield server
    server.stop()


@pytest.fixture
def provider(oauth_server):
    oauth_server.reset()
    return oauth_server


def clients(server_url: str) -> dict:
    return {
        "google": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                   "token_url": server_url + "/token"},
        "microsoft": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                      "tenant": "common", "token_url": server_url + "/token/ms"},
    }


@pytest.fixture
def oauth_host(make_host, provider):
    h = make_host(config={"SHARED_INBOX_OAUTH_CLIENTS": clients(provider.url)})
    h.create_tables()
    return h


def add_mailbox(host, *, refresh_token, access_token=None, expires_at=None,
                provider="google", port=143, smtp_port=587, address=ADDRESS):
    with host.app.app_context():
        m = host.inbox.models
        mailbox = m.Mailbox(
            name="Support", email_address=address, imap_host="127.0.0.1", imap_port=port,
            imap_security="plain", imap_username=address, smtp_host="127.0.0.1",
            smtp_port=smtp_port, smtp_security="plain", auth_type="xoauth2",
            oauth_provider=provider,
        )
        set_oauth_tokens(mailbox, refresh_token, access_token, expires_at)
        host.db.session.add(mailbox)
        host.db.session.commit()
        return mailbox.id


def get_mailbox(host, mailbox_id):
    return host.db.session.get(host.inbox.models.Mailbox, mailbox_id)


def raw_secret(host, mailbox_id) -> str:
    """The oauth_secret column as stored, read with plain SQL."""
    with host.db.engine.connect() as conn:
        table = host.inbox.models.Mailbox.__table__.name
        return conn.execute(sa.text(f"SELECT oauth_secret FROM {table} WHERE id = :id"),
                            {"id": mailbox_id}).scalar_one()


# -- tokens, refresh and errors (token endpoint only) ---------------------------------------
def test_tokens_are_stored_encrypted_and_refreshed_before_they_expire(oauth_host, provider):
    host = oauth_host
    rt = provider.grant(ADDRESS)
    old = provider.issue(ADDRESS)
    # 60 s left is inside the 5 minute margin: refreshed before it runs out.
    mid = add_mailbox(host, refresh_token=rt, access_token=old, expires_at=time.time() + 60)
    with host.app.app_context():
        raw = raw_secret(host, mid)
        assert rt not in raw and old not in raw and "refresh_token" not in raw
        mailbox = get_mailbox(host, mid)
        token = get_access_token(mailbox)
        assert token != old and provider.is_valid(token, ADDRESS)
        host.db.session.commit()
        assert len(provider.token_requests) == 1
        request = provider.token_requests[0]
        assert request["grant_type"] == "refresh_token" and request["refresh_token"] == rt
        assert request["client_id"] == CLIENT_ID and "scope" not in request  # Google
        stored = read_oauth_tokens(mailbox)
        assert stored["access_token"] == token and stored["refresh_token"] == rt
        assert 3500 < stored["expires_at"] - time.time() <= 3600
        raw = raw_secret(host, mid)
        assert token not in raw and rt not in raw
        # Still valid for an hour: no second refresh.
        assert get_access_token(mailbox) == token
        assert len(provider.token_requests) == 1


def test_microsoft_rotated_refresh_token_is_kept(oauth_host, provider):
    host = oauth_host
    provider.rotate = True
    rt = provider.grant(ADDRESS)
    mid = add_mailbox(host, refresh_token=rt, provider="microsoft")
    with host.app.app_context():
        mailbox = get_mailbox(host, mid)
        first = get_access_token(mailbox)
        host.db.session.commit()
        request = provider.token_requests[0]
        assert request["path"] == "/token/ms" and request["scope"] == MICROSOFT_SCOPE
        new_rt = read_oauth_tokens(mailbox)["refresh_token"]
        assert new_rt != rt and new_rt in provider.refresh_tokens
        assert new_rt not in raw_secret(host, mid)
        # The old refresh token is gone at the provider; the rotated one works.
        assert get_access_token(mailbox, force_refresh=True) != first
        assert provider.token_requests[1]["refresh_token"] == new_rt


def test_default_token_endpoints(make_host):
    host = make_host(config={"SHARED_INBOX_OAUTH_CLIENTS": {
        "google": {"client_id": "g", "client_secret": "gs"},
        "microsoft": {"client_id": "m", "tenant": "contoso.onmicrosoft.com"}}})
    with host.app.app_context():
        m = host.inbox.models
        google = m.Mailbox(email_address="a@x", oauth_provider="google")
        url, form = _token_request(google, "rt")
        assert url == "https://oauth2.googleapis.com/token"
        assert form == {"grant_type": "refresh_token", "refresh_token": "rt",
                        "client_id": "g", "client_secret": "gs"}
        ms = m.Mailbox(email_address="b@x", oauth_provider="microsoft")
        url, form = _token_request(ms, "rt")
        assert url == ("https://login.microsoftonline.com/contoso.onmicrosoft.com"
                       "/oauth2/v2.0/token")
        assert form["scope"] == MICROSOFT_SCOPE and "client_secret" not in form
        other = m.Mailbox(email_address="c@x", oauth_provider="yahoo")
        with pytest.raises(OAuthConfigError, match="SHARED_INBOX_OAUTH_CLIENTS"):
            _token_request(other, "rt")


def test_revoked_refresh_token_needs_reauthorisation(oauth_host, provider):
    host = oauth_host
    mid = add_mailbox(host, refresh_token="rt-revoked-long-ago")
    with host.app.app_context():
        mailbox = get_mailbox(host, mid)
        with pytest.raises(NeedsReauthorisation) as info:
            get_access_token(mailbox)
        assert str(info.value) == (
            "needs re-authorisation: Google rejected the stored refresh token "
            "(invalid_grant); reconnect the mailbox")
        assert mailbox.needs_reauth is True
        assert len(provider.token_requests) == 1


def test_missing_refresh_token_needs_reauthorisation(oauth_host, provider):
    mid = add_mailbox(oauth_host, refresh_token=None)
    with oauth_host.app.app_context():
        with pytest.raises(NeedsReauthorisation, match="no Google refresh token"):
            get_access_token(get_mailbox(oauth_host, mid))
        assert provider.token_requests == []


def test_wrong_client_secret_says_so(make_host, provider):
    bad = clients(provider.url)
    bad["google"]["client_secret"] = "not-it"
    host = make_host(config={"SHARED_INBOX_OAUTH_CLIENTS": bad})
    host.create_tables()
    mid = add_mailbox(host, refresh_token=provider.grant(ADDRESS))
    with host.app.app_context():
        with pytest.raises(NeedsReauthorisation, match=r"client \(invalid_client\); check "
                                                       r"SHARED_INBOX_OAUTH_CLIENTS"):
            get_access_token(get_mailbox(host, mid))


def test_unreachable_token_endpoint_is_transient_not_reauthorisation(make_host, provider):
    down = clients(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    host = make_host(config={"SHARED_INBOX_OAUTH_CLIENTS": down})
    host.create_tables()
    mid = add_mailbox(host, refresh_token=provider.grant(ADDRESS), expires_at=0)
    with host.app.app_context():
        mailbox = get_mailbox(host, mid)
        with pytest.raises(OAuthError) as info:
            get_access_token(mailbox)
        assert isinstance(info.value, TokenEndpointUnavailable)
        assert not isinstance(info.value, NeedsReauthorisation)
        assert str(info.value).startswith("cannot reach the Google token endpoint: ")
        assert "re-authorisation" not in str(info.value)
        assert not mailbox.needs_reauth


def test_server_error_at_token_endpoint_is_transient(oauth_host, provider):
    host = oauth_host
    host.app.config["SHARED_INBOX_OAUTH_CLIENTS"]["google"]["token_url"] = (
        provider.url + "/nowhere")  # 404 from the server
    mid = add_mailbox(host, refresh_token=provider.grant(ADDRESS))
    with host.app.app_context():
        with pytest.raises(TokenEndpointUnavailable, match="answered HTTP 404"):
            get_access_token(get_mailbox(host, mid))


def test_host_token_provider_is_used_instead_of_refreshing(oauth_host, provider):
    host = oauth_host
    issued = provider.issue(ADDRESS)
    asked = []

    @host.inbox.oauth_token_provider
    def token(mailbox):
        asked.append(mailbox.email_address)
        return issued

    mid = add_mailbox(host, refresh_token=None)
    with host.app.app_context():
        assert get_access_token(get_mailbox(host, mid)) == issued
    assert asked == [ADDRESS] and provider.token_requests == []


# -- IMAP against a real Dovecot with an oauth2 passdb -------------------------------------
OAUTH2_EXT = """\
introspection_url = {url}/introspect
introspection_mode = post
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
"""

PASSDBS = """\
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {d}/users
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/dovecot-oauth2.conf.ext
}}
# The tests fail logins on purpose: no brute-force penalty (2, 4, 8... s) for 127.0.0.1.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


class OAuthDovecot(dovecot.Dovecot):
    """tests/dovecot.py's server, with XOAUTH2 checked against our introspection endpoint."""

    def __init__(self, users: dict[str, str], oauth_url: str):
        super().__init__(users)
        self.oauth_url = oauth_url

    def start(self) -> "OAuthDovecot":
        original = dovecot.CONFIG
        head, rest = original.split("passdb {{", 1)
        rest = rest.split("}}\n", 1)[1]
        config = (head.replace("auth_mechanisms = plain login",
                               "auth_mechanisms = plain login xoauth2 oauthbearer\n"
                               "auth_failure_delay = 0")
                  + PASSDBS + rest)
        (self.dir / "dovecot-oauth2.conf.ext").write_text(OAUTH2_EXT.format(url=self.oauth_url))
        dovecot.CONFIG = config
        try:
            return super().start()
        finally:
            dovecot.CONFIG = original


@pytest.fixture(scope="module")
def imap_server(oauth_server):
    require("Dovecot (apt-get install dovecot-imapd, run as root)", dovecot.available())
    server = OAuthDovecot({ADDRESS: PASSWORD}, oauth_server.url).start()
    yield server
    server.stop()


def imap(server):
    return imapclient.IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10)


@pytest.mark.slow
def test_dovecot_accepts_password_and_xoauth2_and_rejects_unknown_tokens(imap_server,
                                                                         provider):
    with imap(imap_server) as c:
        assert b"AUTH=XOAUTH2" in c.capabilities()
        c.login(ADDRESS, PASSWORD)
    with imap(imap_server) as c:
        c.oauth2_login(ADDRESS, provider.issue(ADDRESS))
    with imap(imap_server) as c, pytest.raises(imapclient.exceptions.LoginError):
        c.oauth2_login(ADDRESS, "at-made-up")


@pytest.mark.slow
def test_expired_access_token_is_refreshed_and_logs_in_to_dovecot(oauth_host, provider,
                                                                 imap_server):
    host = oauth_host
    rt = provider.grant(ADDRESS)
    stale = provider.issue(ADDRESS)
    provider.expire(stale)
    mid = add_mailbox(host, refresh_token=rt, access_token=stale,
                      expires_at=time.time() - 10, port=imap_server.port)
    with host.app.app_context():
        mailbox = get_mailbox(host, mid)
        with imap(imap_server) as client:
            imap_login(client, mailbox)
            assert b"EXISTS" in client.select_folder("INBOX", readonly=True)
        host.db.session.commit()
        assert len(provider.token_requests) == 1
        fresh = read_oauth_tokens(mailbox)["access_token"]
        assert fresh != stale and provider.introspections[-1] == fresh
        assert stale not in provider.introspections  # never even tried the expired one
        raw = raw_secret(host, mid)
        assert fresh not in raw and rt not in raw and stale not in raw
        # The next connection reuses the stored token.
        with imap(imap_server) as client:
            imap_login(client, mailbox)
        assert len(provider.token_requests) == 1


@pytest.mark.slow
def test_token_rejected_by_imap_server_is_refreshed_once_and_retried(oauth_host, provider,
                                                                    imap_server):
    host = oauth_host
    rt = provider.grant(ADDRESS)
    revoked = provider.issue(ADDRESS)
    provider.expire(revoked)  # looks valid for an hour, but the server says no
    mid = add_mailbox(host, refresh_token=rt, access_token=revoked,
                      expires_at=time.time() + 3600, port=imap_server.port)
    with host.app.app_context():
        mailbox = get_mailbox(host, mid)
        with imap(imap_server) as client:
            imap_login(client, mailbox)
            client.select_folder("INBOX", readonly=True)
        assert len(provider.token_requests) == 1
        assert provider.introspections == [revoked, read_oauth_tokens(mailbox)["access_token"]]
        assert not mailbox.needs_reauth


@pytest.mark.slow
def test_token_still_rejected_after_refresh_needs_reauthorisation(oauth_host, provider,
                                                                 imap_server):
    host = oauth_host
    provider.issue_inactive = True  # e.g. IMAP access disabled for the account
    mid = add_mailbox(host, refresh_token=provider.grant(ADDRESS), port=imap_server.port)
    with host.app.app_context():
        mailbox = get_mailbox(host, mid)
        with imap(imap_server) as client:
            with pytest.raises(NeedsReauthorisation,
                               match="the IMAP server rejected a fresh Google access token"):
                imap_login(client, mailbox)
        assert len(provider.token_requests) == 2  # the first token, then one retry
        assert len(provider.introspections) == 2
        assert mailbox.needs_reauth is True


@pytest.mark.slow
def test_revoked_refresh_token_at_imap_login_needs_reauthorisation(oauth_host, provider,
                                                                  imap_server):
    mid = add_mailbox(oauth_host, refresh_token="rt-revoked", port=imap_server.port)
    with oauth_host.app.app_context():
        with imap(imap_server) as client:
            with pytest.raises(NeedsReauthorisation, match="Google rejected the stored "
                                                           r"refresh token \(invalid_grant\)"):
                imap_login(client, get_mailbox(oauth_host, mid))
        assert provider.introspections == []


@pytest.mark.slow
def test_token_endpoint_down_at_imap_login_is_transient(make_host, provider, imap_server):
    host = make_host(config={"SHARED_INBOX_OAUTH_CLIENTS":
                             clients(f"http://127.0.0.1:{free_port()}")})
    host.create_tables()
    mid = add_mailbox(host, refresh_token=provider.grant(ADDRESS), port=imap_server.port)
    with host.app.app_context():
        mailbox = get_mailbox(host, mid)
        with imap(imap_server) as client:
            with pytest.raises(TokenEndpointUnavailable,
                               match="^cannot reach the Google token endpoint: "):
                imap_login(client, mailbox)
        assert not mailbox.needs_reauth


@pytest.mark.slow
def test_host_token_provider_logs_in_to_dovecot(oauth_host, provider, imap_server):
    host = oauth_host

    @host.inbox.oauth_token_provider
    def token(mailbox):
        return provider.issue(mailbox.email_address)

    mid = add_mailbox(host, refresh_token=None, port=imap_server.port)
    with host.app.app_context():
        with imap(imap_server) as client:
            imap_login(client, get_mailbox(host, mid))
            client.select_folder("INBOX", readonly=True)
    assert provider.token_requests == [] and len(provider.introspections) == 1


@pytest.mark.slow
def test_password_mailbox_still_logs_in_with_its_password(host, imap_server):
    with host.app.app_context():
        m = host.inbox.models
        mailbox = m.Mailbox(name="Pw", email_address=ADDRESS, imap_host="127.0.0.1",
                            imap_port=imap_server.port, imap_security="plain")
        mailbox.imap_password = PASSWORD
        with imap(imap_server) as client:
            imap_login(client, mailbox)  # username falls back to the address
            client.select_folder("INBOX", readonly=True)
        mailbox.imap_password = "wrong"
        with imap(imap_server) as client, pytest.raises(imapclient.exceptions.LoginError):
            imap_login(client, mailbox)


# -- SMTP: aiosmtpd with an AUTH XOAUTH2 mechanism ---------------------------------------
class XOAuth2Handler:
    """aiosmtpd handler: ``auth_XOAUTH2`` adds the mechanism, checked with the provider."""

    def __init__(self, provider: OAuthServer):
        self.provider = provider
        self.logins: list[str] = []
        self.messages: list[tuple[str | None, str, list[str], bytes]] = []

    async def auth_XOAUTH2(self, server, args):
        if len(args) == 2:
            blob = base64.b64decode(args[1])
        else:
            blob = await server.challenge_auth("")
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
        fields = dict(part.split("=", 1) for part in blob.decode().split("\x01") if part)
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        if self.provider.is_valid(token, user):
            self.logins.append(user)
            return AuthResult(success=True, auth_data=user)
        # Like Gmail: a 334 with a JSON error, the client answers with an empty line, 535.
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
        return AuthResult(success=False, handled=False)  # handled=False: aiosmtpd sends 535

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((session.auth_data, envelope.mail_from, envelope.rcpt_tos,
                              envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server(provider):
    handler = XOAuth2Handler(provider)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(),
                            auth_require_tls=False, auth_exclude_mechanism=["PLAIN", "LOGIN"])
    controller.start()
    yield controller, handler
    controller.stop()


def outgoing() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = ADDRESS
    msg["To"] = "alice@example.org"
    msg["Subject"] = "Re: your order"
    msg.set_content("It shipped today.")
    return msg


def test_smtp_xoauth2_login_then_send(oauth_host, provider, smtp_server):
    controller, handler = smtp_server
    host = oauth_host
    mid = add_mailbox(host, refresh_token=provider.grant(ADDRESS), expires_at=0)
    with host.app.app_context():
        mailbox = get_mailbox(host, mid)
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=10) as smtp:
            smtp.ehlo()
            assert "XOAUTH2" in smtp.esmtp_features["auth"]
            smtp_login(smtp, mailbox)
            smtp.send_message(outgoing())
    assert len(provider.token_requests) == 1
    assert handler.logins == [ADDRESS]
    [(auth_user, mail_from, rcpts, content)] = handler.messages
    assert auth_user == ADDRESS and mail_from == ADDRESS and rcpts == ["alice@example.org"]
    assert b"It shipped today." in content


def test_smtp_rejected_token_is_refreshed_once_then_needs_reauthorisation(
        oauth_host, provider, smtp_server):
    controller, handler = smtp_server
    host = oauth_host
    stale = provider.issue(ADDRESS)
    provider.expire(stale)
    mid = add_mailbox(host, refresh_token=provider.grant(ADDRESS), access_token=stale,
                      expires_at=time.time() + 3600)
    with host.app.app_context():
        mailbox = get_mailbox(host, mid)
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=10) as smtp:
            smtp_login(smtp, mailbox)  # rejected, refreshed, accepted
            smtp.send_message(outgoing())
        assert len(provider.token_requests) == 1 and handler.logins == [ADDRESS]

        provider.issue_inactive = True
        provider.expire(read_oauth_tokens(mailbox)["access_token"])
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=10) as smtp:
            with pytest.raises(NeedsReauthorisation, match="SMTP server rejected a fresh "
                                                           "Google access token"):
                smtp_login(smtp, mailbox)
        assert len(provider.token_requests) == 2 and mailbox.needs_reauth


def test_smtp_password_mailbox_uses_login(host):
    """Password mailboxes keep using smtp.login (AUTH PLAIN/LOGIN)."""
    seen = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        seen.append((mechanism, auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"pw", handled=False)

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=free_port(),
                            auth_require_tls=False, authenticator=authenticator)
    controller.start()
    try:
        with host.app.app_context():
            m = host.inbox.models
            mailbox = m.Mailbox(email_address=ADDRESS, smtp_username="smtp-user")
            mailbox.smtp_password = "pw"
            with smtplib.SMTP("127.0.0.1", controller.port, timeout=10) as smtp:
                smtp_login(smtp, mailbox)
    finally:
        controller.stop()
    assert seen and seen[0][1:] == (b"smtp-user", b"pw")


def test_smtp_server_without_xoauth2_is_a_clear_error(oauth_host, provider):
    class Sink:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=free_port(),
                            auth_require_tls=False)
    controller.start()
    mid = add_mailbox(oauth_host, refresh_token=provider.grant(ADDRESS))
    try:
        with oauth_host.app.app_context():
            mailbox = get_mailbox(oauth_host, mid)
            with smtplib.SMTP("127.0.0.1", controller.port, timeout=10) as smtp:
                with pytest.raises(OAuthError, match="does not offer XOAUTH2") as info:
                    smtp_login(smtp, mailbox)
            assert not isinstance(info.value, NeedsReauthorisation)
            assert provider.token_requests == [] and not mailbox.needs_reauth
    finally:
        controller.stop()


@pytest.mark.slow
def test_polling_an_oauth_mailbox_keeps_the_refreshed_token_and_a_revoked_grant_stops_only_it(
        oauth_host, provider, imap_server):
    """Through the real poller: a refresh is stored even when no mail arrived, and a revoked
    grant marks only its own mailbox as needing re-authorisation."""
    from shared_inbox.mail.imap import poll_all

    host = oauth_host
    rt = provider.grant(ADDRESS)
    good = add_mailbox(host, refresh_token=rt, expires_at=time.time() - 10, port=imap_server.port)
    with host.app.app_context():
        results = {r.mailbox: r for r in poll_all()}
        assert results[ADDRESS].error is None
        host.db.session.expire_all()
        get_mailbox(host, good).next_poll_at = None
        host.db.session.commit()
        poll_all()
        assert len(provider.token_requests) == 1  # the second poll reused the stored token

        other = add_mailbox(host, refresh_token="rt-revoked-long-ago", expires_at=time.time() - 10,
                            port=imap_server.port, address="sales@example.com")
        results = {r.mailbox: r for r in poll_all()}
        assert results["sales@example.com"].error.startswith("needs re-authorisation")
        host.db.session.expire_all()
        assert get_mailbox(host, other).needs_reauth
        assert not get_mailbox(host, good).needs_reauth
