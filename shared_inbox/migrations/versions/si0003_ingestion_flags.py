"""Ingestion: back-off state on mailboxes; automated / bounce / imported flags on messages.

Revision ID: si0003
Revises: si0002
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t

revision = "si0003"
down_revision = "si0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table(t("mailbox")) as batch:
        batch.add_column(sa.Column("failure_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_poll_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table(t("message")) as batch:
        for name in ("is_automated", "is_bounce", "is_imported"):
            batch.add_column(sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table(t("message")) as batch:
        for name in ("is_imported", "is_bounce", "is_automated"):
            batch.drop_column(name)
    with op.batch_alter_table(t("mailbox")) as batch:
        batch.drop_column("next_poll_at")
        batch.drop_column("failure_count")
