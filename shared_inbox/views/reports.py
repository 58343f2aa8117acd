"""Dashboard pages: reports (work in progress)."""
from __future__ import annotations


def register(bp) -> None:
    """Add this module's routes to the dashboard blueprint ``bp``."""
