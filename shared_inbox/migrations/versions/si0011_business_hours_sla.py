"""Business hours, holidays, SLA policies and ticket due times.

Revision ID: si0011
Revises: si0010
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t

revision = "si0011"
down_revision = "si0010"
branch_labels = None
depends_on = None

TICKET_DATES = ("first_response_due_at", "resolution_due_at", "sla_due_at",
                "first_response_breached_at", "resolution_breached_at")


def upgrade():
    op.create_table(
        t("business_holiday"),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], [t("mailbox") + ".id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_" + t("business_holiday_mailbox_day"), t("business_holiday"),
                    ["mailbox_id", "day"])
    op.create_table(
        t("sla_policy"),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=True),
        sa.Column("priority", sa.String(10), nullable=True),
        sa.Column("tag_id", sa.Integer(), nullable=True),
        sa.Column("first_response_minutes", sa.Integer(), nullable=True),
        sa.Column("resolution_minutes", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], [t("mailbox") + ".id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tag_id"], [t("tag") + ".id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_" + t("sla_policy_mailbox_id"), t("sla_policy"), ["mailbox_id"])
    op.create_index("ix_" + t("sla_policy_tag_id"), t("sla_policy"), ["tag_id"])

    # Plain ADD COLUMN where possible: a batch copy of the mailbox table on SQLite would
    # touch every table that references it.
    op.add_column(t("mailbox"), sa.Column("timezone", sa.String(64), nullable=False,
                                          server_default="UTC"))
    op.add_column(t("mailbox"), sa.Column("business_hours", sa.JSON(), nullable=True))
    op.add_column(t("mailbox"), sa.Column("auto_close_days", sa.Integer(), nullable=True))
    op.add_column(t("mailbox"), sa.Column("auto_close_message", sa.Text(), nullable=False,
                                          server_default=""))
    for name in TICKET_DATES:
        op.add_column(t("ticket"), sa.Column(name, sa.DateTime(), nullable=True))
    # The foreign key needs a batch copy of the ticket table on SQLite (its reflection
    # would not see ON DELETE of an inline REFERENCES); inbox_message is not touched.
    with op.batch_alter_table(t("ticket")) as batch:
        batch.add_column(sa.Column("sla_policy_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(t("ticket") + "_sla_policy_fk", t("sla_policy"),
                                 ["sla_policy_id"], ["id"], ondelete="SET NULL")
    op.create_index("ix_" + t("ticket_sla_policy_id"), t("ticket"), ["sla_policy_id"])
    op.create_index("ix_" + t("ticket_status_sla_due"), t("ticket"),
                    ["status", "sla_due_at", "id"])


def downgrade():
    op.drop_index("ix_" + t("ticket_status_sla_due"), t("ticket"))
    op.drop_index("ix_" + t("ticket_sla_policy_id"), t("ticket"))
    with op.batch_alter_table(t("ticket")) as batch:
        batch.drop_constraint(t("ticket") + "_sla_policy_fk", type_="foreignkey")
        batch.drop_column("sla_policy_id")
        for name in reversed(TICKET_DATES):
            batch.drop_column(name)
    with op.batch_alter_table(t("mailbox")) as batch:
        for name in ("auto_close_message", "auto_close_days", "business_hours", "timezone"):
            batch.drop_column(name)
    op.drop_index("ix_" + t("sla_policy_tag_id"), t("sla_policy"))
    op.drop_index("ix_" + t("sla_policy_mailbox_id"), t("sla_policy"))
    op.drop_table(t("sla_policy"))
    op.drop_index("ix_" + t("business_holiday_mailbox_day"), t("business_holiday"))
    op.drop_table(t("business_holiday"))
