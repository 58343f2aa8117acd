"""Reports: per-ticket first-response and resolution durations stored by a report (with the
schedule and timestamps they were computed from), so the next report reads them.

Revision ID: si0016
Revises: si0015
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t

revision = "si0016"
down_revision = "si0015"
branch_labels = None
depends_on = None

COLUMNS = (
    ("report_basis", sa.String(40)),
    ("report_first_response_seconds", sa.Float()),
    ("report_resolution_seconds", sa.Float()),
    ("report_first_response_at", sa.DateTime()),
    ("report_closed_at", sa.DateTime()),
)


def upgrade():
    # Nullable, no default: NULL means "not stored yet" (the report works it out).
    for name, type_ in COLUMNS:
        op.add_column(t("ticket"), sa.Column(name, type_, nullable=True))


def downgrade():
    with op.batch_alter_table(t("ticket")) as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
