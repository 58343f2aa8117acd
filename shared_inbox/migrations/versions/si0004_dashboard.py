"""Dashboard: merged tickets point at the ticket they joined; per-agent read state.

Revision ID: si0004
Revises: si0003
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t, user_fk_column

revision = "si0004"
down_revision = "si0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table(t("ticket")) as batch:
        batch.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(t("ticket") + "_merged_into_fk", t("ticket"),
                                 ["merged_into_id"], ["id"], ondelete="SET NULL")
    op.create_table(
        t("ticket_read"),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        user_fk_column("user_id", nullable=False, ondelete="CASCADE"),
        sa.Column("read_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], [t("ticket") + ".id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "user_id"),
    )
    op.create_index("ix_" + t("ticket_read_user_id"), t("ticket_read"), ["user_id"])


def downgrade():
    op.drop_index("ix_" + t("ticket_read_user_id"), t("ticket_read"))
    op.drop_table(t("ticket_read"))
    with op.batch_alter_table(t("ticket")) as batch:
        batch.drop_constraint(t("ticket") + "_merged_into_fk", type_="foreignkey")
        batch.drop_column("merged_into_id")
