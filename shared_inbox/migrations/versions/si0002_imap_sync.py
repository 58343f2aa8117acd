"""IMAP sync state: the per-folder UID cursor with its poller lease, and the ledger of
ingested UIDs that makes ingestion idempotent.

Revision ID: si0002
Revises: si0001
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t

revision = 'si0002'
down_revision = 'si0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(t('sync_state'),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=False),
    sa.Column('folder', sa.String(length=255), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=True),
    sa.Column('last_uid', sa.BigInteger(), nullable=False),
    sa.Column('lease_owner', sa.String(length=100), nullable=True),
    sa.Column('lease_until', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['mailbox_id'], [t('mailbox') + '.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mailbox_id', 'folder')
    )
    op.create_table(t('fetched_uid'),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=False),
    sa.Column('folder', sa.String(length=255), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('uid', sa.BigInteger(), nullable=False),
    sa.Column('message_pk', sa.Integer(), nullable=True),
    sa.Column('fetched_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['mailbox_id'], [t('mailbox') + '.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_pk'], [t('message') + '.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mailbox_id', 'folder', 'uidvalidity', 'uid')
    )
    op.create_index('ix_' + t('fetched_uid_message_pk'), t('fetched_uid'), ['message_pk'], unique=False)


def downgrade():
    op.drop_table(t('fetched_uid'))
    op.drop_table(t('sync_state'))
