"""Web form channel: submissions' rate limit.

Revision ID: si0008
Revises: si0007
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t

revision = "si0008"
down_revision = "si0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        t("webform_hit"),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_" + t("webform_hit_ip_created"), t("webform_hit"), ["ip", "created_at"])


def downgrade():
    op.drop_index("ix_" + t("webform_hit_ip_created"), t("webform_hit"))
    op.drop_table(t("webform_hit"))
