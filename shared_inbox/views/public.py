"""The public blueprint: pages for customers, without login (web form, satisfaction rating).

Separate from the dashboard blueprint so its login guard never applies here; forms still
carry a CSRF token (kept in the visitor's session) and every page gets the same security
headers as the dashboard.
"""
from __future__ import annotations

from flask import Blueprint, request

from ..csrf import check_csrf, csrf_token
from ..config import cv
from . import CONTENT_SECURITY_POLICY


def create_public_blueprint(name: str) -> Blueprint:
    """``name`` is the dashboard blueprint's; this one is ``<name>_public``."""
    bp = Blueprint(f"{name}_public", __name__, template_folder="../templates")

    @bp.before_request
    def _guard():
        check_csrf()

    @bp.after_request
    def _headers(response):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @bp.context_processor
    def _context():
        return {"si_public": {"bp": bp.name, "dashboard_bp": name, "csrf_token": csrf_token,
                              "base_template": cv("PUBLIC_BASE_TEMPLATE"),
                              "load_css": cv("LOAD_CSS")}}

    from . import satisfaction, webform

    for module in (webform, satisfaction):
        module.register_public(bp)
    return bp


def public_endpoint(endpoint: str) -> str:
    """``'form'`` -> ``'shared_inbox_public.form'`` for the current app."""
    from ..extension import get_state

    return f"{get_state().blueprint_name}_public.{endpoint}"


__all__ = ["create_public_blueprint", "public_endpoint", "request"]
