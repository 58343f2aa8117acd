"""Customer context and integrations: outgoing webhooks and their deliveries.

Revision ID: si0007
Revises: si0006
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t

revision = "si0007"
down_revision = "si0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        t("webhook"),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        t("webhook_delivery"),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["webhook_id"], [t("webhook") + ".id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_" + t("webhook_delivery_due"), t("webhook_delivery"),
                    ["status", "next_attempt_at"])
    op.create_index("ix_" + t("webhook_delivery_webhook_created"), t("webhook_delivery"),
                    ["webhook_id", "created_at"])


def downgrade():
    op.drop_index("ix_" + t("webhook_delivery_webhook_created"), t("webhook_delivery"))
    op.drop_index("ix_" + t("webhook_delivery_due"), t("webhook_delivery"))
    op.drop_table(t("webhook_delivery"))
    op.drop_table(t("webhook"))
