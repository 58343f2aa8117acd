"""Two-phase ingestion: ``inbox_message.body_pending`` marks mail the poller stored from its
headers alone, whose body, attachments and quoted history are still to be parsed
(services/accept.py, services/complete.py).

Revision ID: si0018
Revises: si0017
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t

revision = "si0018"
down_revision = "si0017"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(t("message"), sa.Column("body_pending", sa.Boolean(), nullable=False,
                                          server_default=sa.false()))
    pending = sa.text("body_pending")
    op.create_index("ix_" + t("message_body_pending"), t("message"), ["id"],
                    sqlite_where=pending, postgresql_where=pending)


def downgrade():
    op.drop_index("ix_" + t("message_body_pending"), t("message"))
    op.drop_column(t("message"), "body_pending")
