"""Automation queue and agent notifications: ``inbox_message.automation_state`` marks inbound
mail whose rules / auto-replies / SLA still have to run; ``inbox_notification`` is the outbox
of mails to agents (SLA breaches, circuit breaker, rule notifications, weekly summary).

Revision ID: si0006
Revises: si0005
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t

revision = "si0006"
down_revision = "si0005"
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN (no batch copy on SQLite: that would drop the FTS triggers).
    op.add_column(t("message"), sa.Column("automation_state", sa.String(10), nullable=True))
    op.create_index("ix_" + t("message_automation_state"), t("message"), ["automation_state"])
    op.create_table(
        t("notification"),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("to", sa.JSON(), nullable=False),
        sa.Column("subject", sa.String(998), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("send_status", sa.String(10), nullable=False),
        sa.Column("send_error", sa.Text(), nullable=True),
        sa.Column("send_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], [t("mailbox") + ".id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["ticket_id"], [t("ticket") + ".id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_" + t("notification_ticket_id"), t("notification"), ["ticket_id"])
    op.create_index("ix_" + t("notification_due"), t("notification"),
                    ["send_status", "next_attempt_at"])


def downgrade():
    op.drop_index("ix_" + t("notification_due"), t("notification"))
    op.drop_index("ix_" + t("notification_ticket_id"), t("notification"))
    op.drop_table(t("notification"))
    op.drop_index("ix_" + t("message_automation_state"), t("message"))
    op.drop_column(t("message"), "automation_state")
