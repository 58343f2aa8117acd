"""Reports and customer satisfaction ratings.

Revision ID: si0012
Revises: si0011
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

from shared_inbox.migrations.support import t, user_fk_column  # noqa: F401

revision = "si0012"
down_revision = "si0011"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
