"""Initial schema: mailboxes, members, customers, tickets, messages, attachments, tags,
saved replies and the activity log.

Revision ID: si0001
Revises: 
"""
import sqlalchemy as sa
from alembic import op

from shared_inbox.migrations.support import t, user_fk_column

revision = 'si0001'
down_revision = None
branch_labels = ('shared_inbox',)
depends_on = None


def upgrade():
    op.create_table(t('customer'),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email')
    )
    op.create_table(t('mailbox'),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('email_address', sa.String(length=320), nullable=False),
    sa.Column('from_name', sa.String(length=120), nullable=False),
    sa.Column('signature', sa.Text(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('imap_host', sa.String(length=255), nullable=False),
    sa.Column('imap_port', sa.Integer(), nullable=False),
    sa.Column('imap_security', sa.String(length=10), nullable=False),
    sa.Column('imap_username', sa.String(length=320), nullable=False),
    sa.Column('imap_folder', sa.String(length=255), nullable=False),
    sa.Column('after_fetch', sa.String(length=10), nullable=False),
    sa.Column('move_to_folder', sa.String(length=255), nullable=False),
    sa.Column('smtp_host', sa.String(length=255), nullable=False),
    sa.Column('smtp_port', sa.Integer(), nullable=False),
    sa.Column('smtp_security', sa.String(length=10), nullable=False),
    sa.Column('smtp_username', sa.String(length=320), nullable=False),
    sa.Column('auth_type', sa.String(length=20), nullable=False),
    sa.Column('imap_secret', sa.Text(), nullable=True),
    sa.Column('smtp_secret', sa.Text(), nullable=True),
    sa.Column('oauth_provider', sa.String(length=20), nullable=True),
    sa.Column('oauth_secret', sa.Text(), nullable=True),
    sa.Column('import_since', sa.DateTime(), nullable=True),
    sa.Column('last_polled_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('needs_reauth', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email_address')
    )
    op.create_table(t('tag'),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('color', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table(t('mailbox_member'),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=False),
    user_fk_column('user_id', nullable=False, ondelete='CASCADE'),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['mailbox_id'], [t('mailbox') + '.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mailbox_id', 'user_id')
    )
    op.create_index('ix_' + t('mailbox_member_mailbox_id'), t('mailbox_member'), ['mailbox_id'], unique=False)
    op.create_index('ix_' + t('mailbox_member_user_id'), t('mailbox_member'), ['user_id'], unique=False)
    op.create_table(t('saved_reply'),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    user_fk_column('created_by_id', nullable=True, ondelete='SET NULL'),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['mailbox_id'], [t('mailbox') + '.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_' + t('saved_reply_created_by_id'), t('saved_reply'), ['created_by_id'], unique=False)
    op.create_index('ix_' + t('saved_reply_mailbox_id'), t('saved_reply'), ['mailbox_id'], unique=False)
    op.create_table(t('ticket'),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('subject', sa.String(length=998), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('priority', sa.String(length=10), nullable=False),
    user_fk_column('assignee_id', nullable=True, ondelete='SET NULL'),
    sa.Column('snippet', sa.String(length=300), nullable=False),
    sa.Column('message_count', sa.Integer(), nullable=False),
    sa.Column('is_flagged', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('last_message_at', sa.DateTime(), nullable=False),
    sa.Column('last_inbound_at', sa.DateTime(), nullable=True),
    sa.Column('last_outbound_at', sa.DateTime(), nullable=True),
    sa.Column('first_response_at', sa.DateTime(), nullable=True),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('snoozed_until', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], [t('customer') + '.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['mailbox_id'], [t('mailbox') + '.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_' + t('ticket_assignee_status_last'), t('ticket'), ['assignee_id', 'status', 'last_message_at'], unique=False)
    op.create_index('ix_' + t('ticket_customer_id'), t('ticket'), ['customer_id'], unique=False)
    op.create_index('ix_' + t('ticket_mailbox_status_last'), t('ticket'), ['mailbox_id', 'status', 'last_message_at'], unique=False)
    op.create_index('ix_' + t('ticket_status_last'), t('ticket'), ['status', 'last_message_at'], unique=False)
    op.create_table(t('activity'),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    user_fk_column('actor_id', nullable=True, ondelete='SET NULL'),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], [t('ticket') + '.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_' + t('activity_actor_id'), t('activity'), ['actor_id'], unique=False)
    op.create_index('ix_' + t('activity_ticket_created'), t('activity'), ['ticket_id', 'created_at'], unique=False)
    op.create_table(t('message'),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('mailbox_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=10), nullable=False),
    user_fk_column('author_id', nullable=True, ondelete='SET NULL'),
    sa.Column('from_name', sa.String(length=255), nullable=False),
    sa.Column('from_email', sa.String(length=320), nullable=False),
    sa.Column('to', sa.JSON(), nullable=False),
    sa.Column('cc', sa.JSON(), nullable=False),
    sa.Column('subject', sa.String(length=998), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=True),
    sa.Column('in_reply_to', sa.Text(), nullable=False),
    sa.Column('references', sa.Text(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('body_text', sa.Text(), nullable=False),
    sa.Column('reply_text', sa.Text(), nullable=True),
    sa.Column('body_html', sa.Text(), nullable=True),
    sa.Column('raw_key', sa.String(length=255), nullable=True),
    sa.Column('raw_size', sa.Integer(), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=True),
    sa.Column('is_malformed', sa.Boolean(), nullable=False),
    sa.Column('parse_error', sa.Text(), nullable=True),
    sa.Column('thread_reason', sa.String(length=500), nullable=False),
    sa.Column('send_status', sa.String(length=10), nullable=True),
    sa.Column('send_error', sa.Text(), nullable=True),
    sa.Column('send_attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('date', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['mailbox_id'], [t('mailbox') + '.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], [t('ticket') + '.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_' + t('message_author_id'), t('message'), ['author_id'], unique=False)
    op.create_index('ix_' + t('message_content_hash'), t('message'), ['content_hash'], unique=False)
    op.create_index('ix_' + t('message_mailbox_id'), t('message'), ['mailbox_id'], unique=False)
    op.create_index('ix_' + t('message_message_id'), t('message'), ['message_id'], unique=False)
    op.create_index('ix_' + t('message_ticket_created'), t('message'), ['ticket_id', 'created_at'], unique=False)
    op.create_table(t('ticket_tag'),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('tag_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tag_id'], [t('tag') + '.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ticket_id'], [t('ticket') + '.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('ticket_id', 'tag_id')
    )
    op.create_index('ix_' + t('ticket_tag_tag_id'), t('ticket_tag'), ['tag_id'], unique=False)
    op.create_table(t('attachment'),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('storage_key', sa.String(length=255), nullable=False),
    sa.Column('content_id', sa.String(length=255), nullable=True),
    sa.Column('is_inline', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], [t('message') + '.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_' + t('attachment_message_id'), t('attachment'), ['message_id'], unique=False)


def downgrade():
    op.drop_table(t('activity'))
    op.drop_table(t('saved_reply'))
    op.drop_table(t('attachment'))
    op.drop_table(t('message'))
    op.drop_table(t('ticket_tag'))
    op.drop_table(t('ticket'))
    op.drop_table(t('tag'))
    op.drop_table(t('customer'))
    op.drop_table(t('mailbox_member'))
    op.drop_table(t('mailbox'))
