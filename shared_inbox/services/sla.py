"""SLA due times and timers (work in progress)."""
from __future__ import annotations


def on_inbound(event) -> None:
    """Automation step (see services.automation): set or restart the ticket's SLA clocks."""
