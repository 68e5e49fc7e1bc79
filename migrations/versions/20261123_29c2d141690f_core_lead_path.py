"""core lead path

Revision ID: 29c2d141690f
Revises: 
Create Date: 2026-11-23 04:57:18.314634
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.models.base

revision: str = '29c2d141690f'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('leads',
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('partner_id', sa.String(length=64), nullable=True),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('product', sa.String(length=100), nullable=True),
    sa.Column('estimated_value', sa.Float(), nullable=True),
    sa.Column('campaign', sa.String(length=200), nullable=True),
    sa.Column('company', sa.JSON(), nullable=False),
    sa.Column('contact', sa.JSON(), nullable=False),
    sa.Column('occurred_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('routed_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('accepted_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('won_amount', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('lead_id', name=op.f('pk_leads')),
    sa.UniqueConstraint('source', 'external_id', name='uq_leads_source_external_id')
    )
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.create_index('ix_leads_partner_status', ['partner_id', 'status'], unique=False)
        batch_op.create_index('ix_leads_status_created', ['status', 'created_at'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('topic', sa.String(length=200), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('event_id', name=op.f('uq_outbox_event_id'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_pending', ['sent_at', 'id'], unique=False)

    op.create_table('partners',
    sa.Column('partner_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('tier', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('territories', sa.JSON(), nullable=False),
    sa.Column('products', sa.JSON(), nullable=False),
    sa.Column('industries', sa.JSON(), nullable=False),
    sa.Column('max_open_leads', sa.Integer(), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('business_hours', sa.JSON(), nullable=False),
    sa.Column('holiday_country', sa.String(length=8), nullable=True),
    sa.Column('fiscal_year_start_month', sa.Integer(), nullable=False),
    sa.Column('webhook_url', sa.String(length=2000), nullable=True),
    sa.Column('created_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('partner_id', name=op.f('pk_partners'))
    )
    op.create_table('processed_events',
    sa.Column('consumer', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('processed_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('consumer', 'event_id', name=op.f('pk_processed_events'))
    )
    op.create_table('routing_state',
    sa.Column('rule', sa.String(length=200), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('updated_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('rule', name=op.f('pk_routing_state'))
    )
    op.create_table('rule_sets',
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('created_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_rule_sets'))
    )
    op.create_table('lead_events',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('partner_id', sa.String(length=64), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.lead_id'], name=op.f('fk_lead_events_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_lead_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_lead_events_event_id'))
    )
    with op.batch_alter_table('lead_events', schema=None) as batch_op:
        batch_op.create_index('ix_lead_events_lead_at', ['lead_id', 'seq'], unique=False)

    op.create_table('lead_offers',
    sa.Column('offer_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('partner_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('offered_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('responded_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.String(length=40), nullable=True),
    sa.Column('first_touch_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.lead_id'], name=op.f('fk_lead_offers_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('offer_id', name=op.f('pk_lead_offers'))
    )
    with op.batch_alter_table('lead_offers', schema=None) as batch_op:
        batch_op.create_index('ix_lead_offers_lead_partner', ['lead_id', 'partner_id'], unique=False)
        batch_op.create_index('ix_lead_offers_partner_offered', ['partner_id', 'offered_at'], unique=False)

    op.create_table('partner_api_keys',
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('partner_id', sa.String(length=64), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.partner_id'], name=op.f('fk_partner_api_keys_partner_id_partners'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key_id', name=op.f('pk_partner_api_keys'))
    )
    with op.batch_alter_table('partner_api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_partner_api_keys_partner_id'), ['partner_id'], unique=False)

    op.create_table('webhook_receipts',
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('webhook_id', sa.String(length=200), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('received_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.lead_id'], name=op.f('fk_webhook_receipts_lead_id_leads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('source', 'webhook_id', name=op.f('pk_webhook_receipts'))
    )


def downgrade() -> None:
    op.drop_table('webhook_receipts')
    with op.batch_alter_table('partner_api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_partner_api_keys_partner_id'))

    op.drop_table('partner_api_keys')
    with op.batch_alter_table('lead_offers', schema=None) as batch_op:
        batch_op.drop_index('ix_lead_offers_partner_offered')
        batch_op.drop_index('ix_lead_offers_lead_partner')

    op.drop_table('lead_offers')
    with op.batch_alter_table('lead_events', schema=None) as batch_op:
        batch_op.drop_index('ix_lead_events_lead_at')

    op.drop_table('lead_events')
    op.drop_table('rule_sets')
    op.drop_table('routing_state')
    op.drop_table('processed_events')
    op.drop_table('partners')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_pending')

    op.drop_table('outbox')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index('ix_leads_status_created')
        batch_op.drop_index('ix_leads_partner_status')

    op.drop_table('leads')
