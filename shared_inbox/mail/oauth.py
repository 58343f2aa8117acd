"""OAuth2 (XOAUTH2) sign-in for IMAP and SMTP, for Gmail and Microsoft 365.

Providers that turned off password login still accept an OAuth2 access token through the
SASL mechanism XOAUTH2. The mailbox keeps a refresh token; access tokens live about an
hour, so :func:`get_access_token` refreshes them shortly before they expire.

The tokens are stored in ``mailbox.oauth_secret`` as one JSON object
``{"refresh_token", "access_token", "expires_at"}`` (``expires_at`` in unix seconds),
encrypted with the app's Fernet keys like every other mailbox secret. Functions here only
set attributes on the mailbox; the caller commits.

A host that manages tokens itself (a central OAuth service, a secrets vault) registers
``@inbox.oauth_token_provider`` and is asked for the access token instead.

Errors are :class:`OAuthError`:

- :class:`NeedsReauthorisation`: the provider no longer accepts the stored grant (revoked,
  expired, password changed, consent withdrawn), or the server rejects fresh tokens. A
  person has to reconnect the mailbox; ``mailbox.needs_reauth`` is set.
- :class:`TokenEndpointUnavailable`: the token endpoint cannot be reached or failed
  (network, timeout, HTTP 5xx/429). Transient: try again at the next poll.
- :class:`OAuthConfigError`: the mailbox names a provider for which
  ``SHARED_INBOX_OAUTH_CLIENTS`` has no client.
"""
from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request

from imapclient.exceptions import LoginError

from ..config import cv
from ..crypto import decrypt_secret, encrypt_secret
from ..extension import get_state

log = logging.getLogger("shared_inbox.oauth")

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
MICROSOFT_SCOPE = (
    "https://outlook.office.com/IMAP.AccessAsUser.All "
    "https://outlook.office.com/SMTP.Send offline_access"
)
PROVIDER_NAMES = {"google": "Google", "microsoft": "Microsoft"}


class OAuthError(Exception):
    """An OAuth2 problem, worded for the person who looks after the mailbox."""


class NeedsReauthorisation(OAuthError):
    """The stored grant is no longer accepted: the mailbox must be connected again."""


class TokenEndpointUnavailable(OAuthError):
    """The provider's token endpoint could not be reached or failed; try again later."""


class OAuthConfigError(OAuthError):
    """The app has no OAuth2 client for the mailbox's provider."""


# -- stored tokens ----------------------------------------------------------------------
def read_oauth_tokens(mailbox) -> dict:
    """The decrypted ``{"refresh_token", "access_token", "expires_at"}`` (values may be None)."""
    raw = decrypt_secret(mailbox.oauth_secret)
    data = json.loads(raw) if raw else {}
    return {
        "refresh_token": data.get("refresh_token"),
        "access_token": data.get("access_token"),
        "expires_at": data.get("expires_at"),
    }


def set_oauth_tokens(mailbox, refresh_token: str | None, access_token: str | None = None,
                     expires_at: float | None = None) -> None:
    """Store (encrypted) the tokens of a newly connected mailbox; the caller commits."""
    _store(mailbox, {"refresh_token": refresh_token, "access_token": access_token,
                     "expires_at": int(expires_at) if expires_at is not None else None})
    mailbox.needs_reauth = False


def _store(mailbox, tokens: dict) -> None:
    mailbox.oauth_secret = encrypt_secret(json.dumps(tokens, sort_keys=True))


# -- access tokens -----------------------------------------------------------------------
def _provider_label(mailbox) -> str:
    return PROVIDER_NAMES.get(mailbox.oauth_provider or "", str(mailbox.oauth_provider))


def _host_provider():
    return getattr(get_state().extension, "_oauth_token_provider", None)


def get_access_token(mailbox, *, force_refresh: bool = False) -> str:
    """A valid access token for ``mailbox``, refreshed when it expires within the margin.

    ``force_refresh`` ignores the stored token (used when a server rejected it). Raises
    :class:`NeedsReauthorisation`, :class:`TokenEndpointUnavailable` or
    :class:`OAuthConfigError`.
    """
    provider = _host_provider()
    if provider is not None:
        token = provider(mailbox)
        if not token:
            raise _reauth(mailbox, "needs re-authorisation: the site's OAuth token provider "
                                   "returned no access token for this mailbox; reconnect "
                                   "the mailbox")
        return token
    tokens = read_oauth_tokens(mailbox)
    fresh = (tokens["access_token"] and tokens["expires_at"] is not None
             and float(tokens["expires_at"]) - time.time() > cv("OAUTH_REFRESH_MARGIN"))
    if fresh and not force_refresh:
        return tokens["access_token"]
    return refresh_access_token(mailbox, tokens)


def refresh_access_token(mailbox, tokens: dict | None = None) -> str:
    """Trade the stored refresh token for a new access token and store both."""
    tokens = tokens if tokens is not None else read_oauth_tokens(mailbox)
    label = _provider_label(mailbox)
    if not tokens["refresh_token"]:
        raise _reauth(mailbox, f"needs re-authorisation: no {label} refresh token is stored "
                               f"for this mailbox; reconnect the mailbox")
    url, form = _token_request(mailbox, tokens["refresh_token"])
    answer = _post_form(mailbox, url, form)
    access = answer.get("access_token")
    if not access:
        raise TokenEndpointUnavailable(
            f"the {label} token endpoint answered without an access token; try again later")
    try:
        expires_in = int(answer.get("expires_in") or 3600)
    except (TypeError, ValueError):
        expires_in = 3600
    _store(mailbox, {
        # Microsoft rotates refresh tokens: keep the newest one.
        "refresh_token": answer.get("refresh_token") or tokens["refresh_token"],
        "access_token": access,
        "expires_at": int(time.time()) + expires_in,
    })
    mailbox.needs_reauth = False
    return access


def _client(mailbox) -> dict:
    clients = cv("OAUTH_CLIENTS") or {}
    client = clients.get(mailbox.oauth_provider or "")
    if not client or not client.get("client_id"):
        raise OAuthConfigError(
            f"no OAuth2 client is configured for {mailbox.oauth_provider!r}: set "
            f"SHARED_INBOX_OAUTH_CLIENTS[{mailbox.oauth_provider!r}] (client_id, client_secret)")
    return client


def _token_request(mailbox, refresh_token: str) -> tuple[str, dict]:
    client = _client(mailbox)
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": client["client_id"]}
    if client.get("client_secret"):
        form["client_secret"] = client["client_secret"]
    if mailbox.oauth_provider == "google":
        url = client.get("token_url") or GOOGLE_TOKEN_URL
    elif mailbox.oauth_provider == "microsoft":
        url = client.get("token_url") or MICROSOFT_TOKEN_URL.format(
            tenant=urllib.parse.quote(client.get("tenant") or "common", safe=""))
        form["scope"] = client.get("scope") or MICROSOFT_SCOPE
    else:
        raise OAuthConfigError(f"unknown OAuth2 provider {mailbox.oauth_provider!r}: "
                               f"use 'google' or 'microsoft'")
    return url, form


def _post_form(mailbox, url: str, form: dict) -> dict:
    label = _provider_label(mailbox)
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=cv("IMAP_TIMEOUT")) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read()
        _raise_for_http_error(mailbox, label, exc.code, body)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise TokenEndpointUnavailable(
            f"cannot reach the {label} token endpoint: {reason}; will try again") from exc
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise TokenEndpointUnavailable(
            f"the {label} token endpoint sent an answer that is not JSON; will try again"
        ) from exc
    if not isinstance(answer, dict):
        raise TokenEndpointUnavailable(
            f"the {label} token endpoint sent an unexpected answer; will try again")
    return answer


def _raise_for_http_error(mailbox, label: str, status: int, body: bytes):
    try:
        answer = json.loads(body)
        error = str(answer.get("error") or "")
        description = str(answer.get("error_description") or "").splitlines()[0:1]
    except (ValueError, AttributeError):
        error, description = "", []
    detail = f" ({error})" if error else f" (HTTP {status})"
    if description:
        log.info("%s token endpoint: %s %s", label, error, description[0])
    if status in (400, 401, 403) and error in ("invalid_client", "unauthorized_client"):
        raise _reauth(mailbox, f"needs re-authorisation: {label} rejected this site's OAuth2 "
                               f"client{detail}; check SHARED_INBOX_OAUTH_CLIENTS, then "
                               f"reconnect the mailbox")
    if status in (400, 401, 403):
        raise _reauth(mailbox, f"needs re-authorisation: {label} rejected the stored refresh "
                               f"token{detail}; reconnect the mailbox")
    raise TokenEndpointUnavailable(
        f"the {label} token endpoint answered HTTP {status}{'' if not error else ' ' + error}; "
        f"will try again")


def _reauth(mailbox, message: str) -> NeedsReauthorisation:
    """The error to raise; marks the mailbox so the dashboard can ask for a reconnect."""
    mailbox.needs_reauth = True
    return NeedsReauthorisation(message)


# -- logging in ----------------------------------------------------------------------------
def _username(mailbox, smtp: bool = False) -> str:
    if smtp and mailbox.smtp_username:
        return mailbox.smtp_username
    return mailbox.imap_username or mailbox.email_address


def xoauth2_string(user: str, access_token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64)."""
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01"


def imap_login(client, mailbox) -> None:
    """Log ``client`` (an IMAPClient) in with the mailbox's password or XOAUTH2 token.

    Password mailboxes: ``client.login`` and its ``LoginError`` unchanged. XOAUTH2: a token
    the server rejects is refreshed once and retried; a second rejection raises
    :class:`NeedsReauthorisation`. Token errors are :class:`OAuthError`.
    """
    user = _username(mailbox)
    if mailbox.auth_type != "xoauth2":
        client.login(user, mailbox.imap_password or "")
        return
    if not client.has_capability("AUTH=XOAUTH2"):
        raise OAuthError(f"the IMAP server {mailbox.imap_host} does not offer XOAUTH2 sign-in; "
                         f"check the server name or use a password")
    token = get_access_token(mailbox)
    try:
        client.oauth2_login(user, token)
        return
    except LoginError as exc:
        log.info("IMAP server rejected the access token of %s (%s); refreshing",
                 mailbox.email_address, exc)
    token = get_access_token(mailbox, force_refresh=True)
    try:
        client.oauth2_login(user, token)
    except LoginError as exc:
        raise _reauth(mailbox, f"needs re-authorisation: the IMAP server rejected a fresh "
                               f"{_provider_label(mailbox)} access token for {user} ({exc}); "
                               f"reconnect the mailbox") from exc


def smtp_login(smtp, mailbox) -> None:
    """Authenticate an ``smtplib.SMTP`` connection (after EHLO/STARTTLS).

    Password mailboxes: ``smtp.login`` and its ``SMTPAuthenticationError`` unchanged.
    XOAUTH2: ``AUTH XOAUTH2`` with the access token; refreshed and retried once when
    rejected, then :class:`NeedsReauthorisation`.
    """
    import smtplib

    user = _username(mailbox, smtp=True)
    if mailbox.auth_type != "xoauth2":
        smtp.login(user, mailbox.smtp_password or "")
        return
    smtp.ehlo_or_helo_if_needed()
    if "XOAUTH2" not in smtp.esmtp_features.get("auth", "").upper().split():
        raise OAuthError(f"the SMTP server {mailbox.smtp_host} does not offer XOAUTH2 sign-in; "
                         f"check the server name or use a password")
    token = get_access_token(mailbox)
    try:
        _smtp_xoauth2(smtp, user, token)
        return
    except smtplib.SMTPAuthenticationError as exc:
        log.info("SMTP server rejected the access token of %s (%s); refreshing",
                 mailbox.email_address, exc.smtp_code)
    token = get_access_token(mailbox, force_refresh=True)
    try:
        _smtp_xoauth2(smtp, user, token)
    except smtplib.SMTPAuthenticationError as exc:
        reply = exc.smtp_error.decode(errors="replace") if isinstance(
            exc.smtp_error, bytes) else str(exc.smtp_error)
        raise _reauth(mailbox, f"needs re-authorisation: the SMTP server rejected a fresh "
                               f"{_provider_label(mailbox)} access token for {user} "
                               f"({exc.smtp_code} {reply}); reconnect the mailbox") from exc


def _smtp_xoauth2(smtp, user: str, token: str) -> None:
    auth_string = xoauth2_string(user, token)

    def authobject(challenge=None):
        # smtplib calls this with None for the initial response and base64-encodes the str
        # it returns. A 334 challenge after it carries the server's JSON error (RFC 7628
        # style): answer with an empty line so the server ends with its 535.
        return auth_string if challenge is None else ""

    smtp.auth("XOAUTH2", authobject)
