"""Auto-replies: per-mailbox acknowledgement and out-of-hours replies, loop protection.

Revision ID: si0010
Revises: si0009
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

from shared_inbox.migrations.support import t, user_fk_column  # noqa: F401

revision = "si0010"
down_revision = "si0009"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
