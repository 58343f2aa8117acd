"""The dashboard blueprint: made per app, so its name and prefix come from that app's config."""
from __future__ import annotations

from flask import Blueprint, request

from ..access import is_admin, login_required_for_inbox
from ..config import cv
from ..csrf import check_csrf, csrf_token
from ..extension import get_state

#: Applied to every dashboard page. HTML mail is shown in sandboxed iframes that inherit
#: it, so even a sanitizer miss cannot load a remote resource or run a script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'self'"
)


def create_blueprint(name: str) -> Blueprint:
    bp = Blueprint(
        name, __name__, template_folder="../templates", static_folder="../static/shared_inbox",
        static_url_path="/static",
    )

    @bp.before_request
    def _guard():
        if request.endpoint == f"{name}.static":
            return None
        response = login_required_for_inbox()
        if response is not None:
            return response
        check_csrf()
        return None

    @bp.after_request
    def _headers(response):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @bp.context_processor
    def _context():
        state = get_state()
        return {
            "si": {
                "base_template": cv("BASE_TEMPLATE"),
                "load_css": cv("LOAD_CSS"),
                "bp": name,
                "csrf_token": csrf_token,
                "display_user": state.extension.display_user,
                "is_admin": is_admin(),
            }
        }

    from . import (autoreplies, customers, inbox, presence, replies, reports, rules,
                   saved_replies, service_levels, settings, tags, tickets, webhooks)

    for module in (inbox, tickets, replies, settings, saved_replies, tags, customers, webhooks,
                   rules, autoreplies, service_levels, reports, presence):
        module.register(bp)
    return bp
