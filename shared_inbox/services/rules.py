"""Rules: conditions and actions run on new tickets and customer replies (work in progress)."""
from __future__ import annotations


def on_inbound(event) -> None:
    """Automation step (see services.automation): apply the mailbox's rules to ``event``."""
