"""Public pages (no login): satisfaction (work in progress)."""
from __future__ import annotations


def register_public(bp) -> None:
    """Add this module's routes to the public blueprint ``bp``."""
