"""Web form channel: submissions' rate limit.

Revision ID: si0008
Revises: si0007
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

from shared_inbox.migrations.support import t, user_fk_column  # noqa: F401

revision = "si0008"
down_revision = "si0007"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
