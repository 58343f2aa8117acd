"""Helpers for migration scripts: our table prefix and the host's user key.

A migration cannot import today's models (it must describe the schema as it was), but the
prefix and the host's user table are installation choices, so they come from the options
that ``shared_inbox.schema`` hands to Alembic.
"""
import sqlalchemy as sa
from alembic import context


def options() -> dict:
    return context.config.attributes["shared_inbox"]


def t(name: str) -> str:
    """Our table (or index) name with the installation's prefix."""
    return options()["prefix"] + name


def user_fk_column(name: str, *, nullable: bool = True, ondelete: str = "SET NULL") -> sa.Column:
    """A column referencing the host's user table, of the same type as its primary key."""
    opts = options()
    return sa.Column(
        name,
        opts["user_pk_type"],
        sa.ForeignKey(f"{opts['user_table']}.{opts['user_pk']}", ondelete=ondelete),
        nullable=nullable,
    )
