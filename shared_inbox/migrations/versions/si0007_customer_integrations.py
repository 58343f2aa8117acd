"""Customer context and integrations: outgoing webhooks and their deliveries.

Revision ID: si0007
Revises: si0006
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

from shared_inbox.migrations.support import t, user_fk_column  # noqa: F401

revision = "si0007"
down_revision = "si0006"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
