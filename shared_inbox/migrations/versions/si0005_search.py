"""Inbox search: full-text objects on messages (SQLite FTS5 table + triggers, PostgreSQL GIN
expression index) and indexes for the inbox: folder counts, the "waiting longest" sort and ``updated_at`` (the folder counts cache's change check).

The FTS objects are dialect specific and not mapped in the models; the same functions
create them for fresh installs (``schema.init_db``).

Revision ID: si0005
Revises: si0004
"""
from alembic import op

from shared_inbox.migrations.support import options, t
from shared_inbox.services.search import create_search_objects, drop_search_objects

revision = "si0005"
down_revision = "si0004"
branch_labels = None
depends_on = None


FOLDER_COUNTS = ["status", "mailbox_id", "assignee_id", "snoozed_until", "merged_into_id"]

# "Waiting longest": the waiting tickets, longest wait first.
STATUS_INBOUND = ["status", "last_inbound_at", "id"]


def upgrade():
    op.create_index("ix_" + t("ticket_folder_counts"), t("ticket"), FOLDER_COUNTS)
    op.create_index("ix_" + t("ticket_status_inbound"), t("ticket"), STATUS_INBOUND)
    op.create_index("ix_" + t("ticket_updated_at"), t("ticket"), ["updated_at"])
    create_search_objects(op.get_bind(), options()["prefix"])


def downgrade():
    drop_search_objects(op.get_bind(), options()["prefix"])
    op.drop_index("ix_" + t("ticket_updated_at"), t("ticket"))
    op.drop_index("ix_" + t("ticket_status_inbound"), t("ticket"))
    op.drop_index("ix_" + t("ticket_folder_counts"), t("ticket"))
