"""Customer satisfaction per mailbox: ``inbox_mailbox.ask_for_rating`` (None follows
``SHARED_INBOX_SATISFACTION``; set from the mailbox settings form).

Revision ID: si0017
Revises: si0016
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t

revision = "si0017"
down_revision = "si0016"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(t("mailbox"), sa.Column("ask_for_rating", sa.Boolean(), nullable=True))


def downgrade():
    with op.batch_alter_table(t("mailbox")) as batch:
        batch.drop_column("ask_for_rating")
