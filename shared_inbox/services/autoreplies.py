"""Automatic replies to customers, with loop protection (work in progress)."""
from __future__ import annotations


def on_inbound(event) -> None:
    """Automation step (see services.automation): acknowledge / out-of-hours reply."""
