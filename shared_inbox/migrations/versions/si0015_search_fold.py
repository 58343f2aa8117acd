"""Search without accents on PostgreSQL: the GIN index is rebuilt on the document folded by
``shared_inbox_fold`` (``unaccent`` where the extension may be created), so "jose" finds
"José" as it already does on SQLite. Nothing changes on SQLite.

Revision ID: si0015
Revises: si0013
"""
from alembic import op

from shared_inbox.migrations.support import options
from shared_inbox.services.search import pg_index_name, refold_search_index

revision = "si0015"
down_revision = "si0013"
branch_labels = None
depends_on = None

# The document indexed before this revision.
_UNFOLDED = ("to_tsvector('simple', coalesce(subject, '') || ' ' || coalesce(body_text, '') "
             "|| ' ' || coalesce(from_name, '') || ' ' || coalesce(from_email, ''))")


def upgrade():
    refold_search_index(op.get_bind(), options()["prefix"])


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        prefix = options()["prefix"]
        bind.exec_driver_sql(f"DROP INDEX IF EXISTS {pg_index_name(prefix)}")
        bind.exec_driver_sql(f"CREATE INDEX {pg_index_name(prefix)} ON {prefix}message "
                             f"USING gin (({_UNFOLDED}))")
