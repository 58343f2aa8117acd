"""Schema management: our tables only, in the host's database, with our own Alembic history.

Migrations ship inside the package (``shared_inbox/migrations``) and record their state in
``<prefix>alembic_version``, so they never touch the host's ``alembic_version`` nor need
the host to use Alembic at all. A fresh install creates the current tables and stamps
the newest revision (Alembic's "create_all then stamp" recipe); an existing install is
upgraded revision by revision.
"""
from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask

from .extension import get_state
from .models import OWN_TABLE_NAMES, OWN_TABLE_PREFIXES, user_primary_key

MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")


def _options(state) -> dict:
    pk = user_primary_key(state.user_model)
    return {
        "prefix": state.models.prefix,
        "user_table": pk.table.fullname,
        "user_pk": pk.name,
        "user_pk_type": pk.type,
    }


def version_table(app: Flask | None = None) -> str:
    return get_state(app).models.prefix + "alembic_version"


def _config(connection, app: Flask | None = None) -> Config:
    state = get_state(app)
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    cfg.attributes["connection"] = connection
    cfg.attributes["shared_inbox"] = _options(state)
    return cfg


def _engine():
    return get_state().db.engine


def current_revision(connection) -> str | None:
    ctx = MigrationContext.configure(
        connection, opts={"version_table": version_table()}
    )
    return ctx.get_current_revision()


def head_revision() -> str:
    return ScriptDirectory(MIGRATIONS_DIR).get_current_head()


def init_db() -> str:
    """Create the extension's tables (leaving every other table alone); returns what it did."""
    state = get_state()
    with _engine().begin() as conn:
        if current_revision(conn) is not None:
            command.upgrade(_config(conn), "head")
            return "upgraded"
        state.db.metadata.create_all(conn, tables=state.models.tables, checkfirst=True)
        # Dialect-specific full-text objects (not mapped in the models), as si0005 makes them.
        from .services.search import ensure_search_objects

        ensure_search_objects(conn)
        command.stamp(_config(conn), "head")
        return "created"


def upgrade(revision: str = "head") -> None:
    with _engine().begin() as conn:
        command.upgrade(_config(conn), revision)


def downgrade(revision: str) -> None:
    with _engine().begin() as conn:
        command.downgrade(_config(conn), revision)


def is_current(app: Flask | None = None) -> bool:
    with get_state(app).db.engine.connect() as conn:
        return current_revision(conn) == head_revision()


def exclude_from_host_migrations(obj, name, type_, reflected, compare_to) -> bool:
    """``include_object`` filter that keeps our tables out of the host's autogenerate.

    ``Migrate(app, db, include_object=exclude_from_host_migrations)`` (Flask-Migrate) or
    ``context.configure(..., include_object=exclude_from_host_migrations)`` (Alembic).
    """
    table_name = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    if table_name is None:
        return True
    if table_name in OWN_TABLE_NAMES:
        return False
    # Reflected tables of ours that this process did not build (e.g. after a rename).
    return not (reflected and any(table_name.startswith(p) for p in OWN_TABLE_PREFIXES))


def table_names(app: Flask | None = None) -> list[str]:
    return [t.name for t in get_state(app).models.tables]


def existing_tables(app: Flask | None = None) -> set[str]:
    return set(sa.inspect(get_state(app).db.engine).get_table_names())


__all__ = [
    "init_db", "upgrade", "downgrade", "is_current", "exclude_from_host_migrations",
    "head_revision", "current_revision", "version_table",
]
