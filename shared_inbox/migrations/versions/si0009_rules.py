"""Rules: conditions and actions run on new tickets and customer replies.

Revision ID: si0009
Revises: si0008
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

from shared_inbox.migrations.support import t, user_fk_column  # noqa: F401

revision = "si0009"
down_revision = "si0008"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
