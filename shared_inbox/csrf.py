"""CSRF protection for every form of the dashboard.

If the host already uses Flask-WTF's ``CSRFProtect``, its token is used (and it checks our
forms itself); otherwise a per-session token is checked on every unsafe request to the
blueprint, from the ``csrf_token`` form field or the ``X-CSRFToken`` header (htmx).
"""
from __future__ import annotations

import hmac
import secrets

from flask import abort, current_app, request, session

SESSION_KEY = "_shared_inbox_csrf"


def _host_csrf():
    return current_app.extensions.get("csrf")


def csrf_token() -> str:
    if _host_csrf() is not None:
        from flask_wtf.csrf import generate_csrf

        return generate_csrf()
    token = session.get(SESSION_KEY)
    if not token:
        token = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if _host_csrf() is not None:
        from flask_wtf.csrf import ValidationError, validate_csrf

        try:
            validate_csrf(request.form.get("csrf_token") or request.headers.get("X-CSRFToken"))
        except ValidationError:
            abort(400, description="The form expired or did not come from this site. Reload and try again.")
        return
    expected = session.get(SESSION_KEY)
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRFToken") or ""
    if not expected or not hmac.compare_digest(expected, sent):
        abort(400, description="The form expired or did not come from this site. Reload and try again.")
