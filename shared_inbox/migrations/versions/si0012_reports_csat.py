"""Reports and customer satisfaction ratings: indexes for date-range reports, the rating
table (one per ticket), and the record of weekly summaries sent (once per week).

Revision ID: si0012
Revises: si0011
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t

revision = "si0012"
down_revision = "si0011"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_" + t("ticket_created_at"), t("ticket"), ["created_at"])
    op.create_index("ix_" + t("ticket_closed_at"), t("ticket"), ["closed_at"])
    # Only indexes on inbox_message: no batch copy (that would drop the FTS triggers).
    # Partial (agent replies only) and covering for the reports' two reply queries.
    outbound = sa.text("kind = 'outbound'")
    op.create_index("ix_" + t("message_outbound_created"), t("message"),
                    ["created_at", "ticket_id", "mailbox_id", "author_id", "thread_reason"],
                    sqlite_where=outbound, postgresql_where=outbound)
    op.create_index("ix_" + t("message_outbound_ticket"), t("message"),
                    ["ticket_id", "author_id", "thread_reason"],
                    sqlite_where=outbound, postgresql_where=outbound)
    op.create_table(
        t("satisfaction_rating"),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("rating", sa.String(10), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], [t("ticket") + ".id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_id"], [t("message") + ".id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id"),
    )
    op.create_index("ix_" + t("satisfaction_rating_updated_at"), t("satisfaction_rating"),
                    ["updated_at"])
    op.create_table(
        t("report_digest"),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("period"),
    )


def downgrade():
    op.drop_table(t("report_digest"))
    op.drop_index("ix_" + t("satisfaction_rating_updated_at"), t("satisfaction_rating"))
    op.drop_table(t("satisfaction_rating"))
    op.drop_index("ix_" + t("message_outbound_ticket"), t("message"))
    op.drop_index("ix_" + t("message_outbound_created"), t("message"))
    op.drop_index("ix_" + t("ticket_closed_at"), t("ticket"))
    op.drop_index("ix_" + t("ticket_created_at"), t("ticket"))
