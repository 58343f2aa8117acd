"""Auto-replies: per-mailbox acknowledgement and out-of-hours replies, loop protection.

Revision ID: si0010
Revises: si0009
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t

MAILBOX_COLUMNS = (
    ("autoreply_ack_enabled", sa.Boolean(), sa.false()),
    ("autoreply_ack_subject", sa.String(998), ""),
    ("autoreply_ack_text", sa.Text(), ""),
    ("autoreply_ooh_enabled", sa.Boolean(), sa.false()),
    ("autoreply_ooh_subject", sa.String(998), ""),
    ("autoreply_ooh_text", sa.Text(), ""),
)

revision = "si0010"
down_revision = "si0009"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN: a batch copy of the mailbox table would touch every table that
    # references it.
    for name, type_, default in MAILBOX_COLUMNS:
        op.add_column(t("mailbox"), sa.Column(name, type_, nullable=False,
                                              server_default=default))
    op.add_column(t("mailbox"), sa.Column("autoreply_breaker_at", sa.DateTime(), nullable=True))
    op.create_table(
        t("auto_mail"),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], [t("mailbox") + ".id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ticket_id"], [t("ticket") + ".id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_" + t("auto_mail_mailbox_created"), t("auto_mail"),
                    ["mailbox_id", "created_at"])
    op.create_index("ix_" + t("auto_mail_recipient_created"), t("auto_mail"),
                    ["recipient", "created_at"])


def downgrade():
    op.drop_index("ix_" + t("auto_mail_recipient_created"), t("auto_mail"))
    op.drop_index("ix_" + t("auto_mail_mailbox_created"), t("auto_mail"))
    op.drop_table(t("auto_mail"))
    with op.batch_alter_table(t("mailbox")) as batch:
        batch.drop_column("autoreply_breaker_at")
        for name, _, _ in reversed(MAILBOX_COLUMNS):
            batch.drop_column(name)
