"""Business hours, holidays, SLA policies and ticket due times.

Revision ID: si0011
Revises: si0010
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

from shared_inbox.migrations.support import t, user_fk_column  # noqa: F401

revision = "si0011"
down_revision = "si0010"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
