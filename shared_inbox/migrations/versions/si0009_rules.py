"""Rules: conditions and actions run on new tickets and customer replies, in order; members
can be marked unavailable for round-robin assignment.

Revision ID: si0009
Revises: si0008
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t, user_fk_column

revision = "si0009"
down_revision = "si0008"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(t("mailbox_member"), sa.Column(
        "is_available", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_table(
        t("rule"),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=True),
        sa.Column("trigger", sa.String(10), nullable=False),
        sa.Column("match", sa.String(3), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("stop_processing", sa.Boolean(), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("round_robin_last", sa.String(64), nullable=True),
        user_fk_column("created_by_id"),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], [t("mailbox") + ".id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_" + t("rule_mailbox_id"), t("rule"), ["mailbox_id"])
    op.create_index("ix_" + t("rule_created_by_id"), t("rule"), ["created_by_id"])
    op.create_index("ix_" + t("rule_position"), t("rule"), ["position", "id"])


def downgrade():
    op.drop_index("ix_" + t("rule_position"), t("rule"))
    op.drop_index("ix_" + t("rule_created_by_id"), t("rule"))
    op.drop_index("ix_" + t("rule_mailbox_id"), t("rule"))
    op.drop_table(t("rule"))
    with op.batch_alter_table(t("mailbox_member")) as batch:
        batch.drop_column("is_available")
