"""Collision safety: who is viewing or replying to a ticket right now; and the per-mailbox
choice to file a copy of each reply in the Sent folder.

Revision ID: si0013
Revises: si0012
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t, user_fk_column

revision = "si0013"
down_revision = "si0012"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        t("presence"),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        user_fk_column("user_id", nullable=False, ondelete="CASCADE"),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], [t("ticket") + ".id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "user_id"),
    )
    op.create_index("ix_" + t("presence_last_seen"), t("presence"), ["last_seen"])
    # Per-mailbox copy of replies in the Sent folder.
    op.add_column(t("mailbox"), sa.Column("append_to_sent", sa.Boolean(), nullable=False,
                                          server_default=sa.false()))


def downgrade():
    with op.batch_alter_table(t("mailbox")) as batch:
        batch.drop_column("append_to_sent")
    op.drop_index("ix_" + t("presence_last_seen"), t("presence"))
    op.drop_table(t("presence"))
