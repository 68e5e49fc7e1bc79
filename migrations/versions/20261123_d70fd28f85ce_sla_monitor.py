"""sla monitor

Revision ID: d70fd28f85ce
Revises: 29c2d141690f
Create Date: 2026-11-23 05:20:20.044975
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.models.base

revision: str = 'd70fd28f85ce'
down_revision: str | None = '29c2d141690f'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sla_clocks',
    sa.Column('clock_id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('partner_id', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('policy', sa.String(length=64), nullable=False),
    sa.Column('clock', sa.String(length=16), nullable=False),
    sa.Column('duration', sa.String(length=40), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('started_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('armed', sa.Boolean(), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.Column('breached', sa.Boolean(), nullable=False),
    sa.Column('breached_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('met_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('met_late', sa.Boolean(), nullable=True),
    sa.Column('closed_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('close_reason', sa.String(length=32), nullable=True),
    sa.Column('opened_by', sa.String(length=64), nullable=False),
    sa.Column('updated_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('clock_id', name=op.f('pk_sla_clocks'))
    )
    with op.batch_alter_table('sla_clocks', schema=None) as batch_op:
        batch_op.create_index('ix_sla_clocks_armed_due', ['armed', 'due_at'], unique=False)
        batch_op.create_index('ix_sla_clocks_lead_kind_status', ['lead_id', 'kind', 'status'], unique=False)
        batch_op.create_index('ix_sla_clocks_partner_kind', ['partner_id', 'kind'], unique=False)

    op.create_table('sla_partners',
    sa.Column('partner_id', sa.String(length=64), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('business_hours', sa.JSON(), nullable=False),
    sa.Column('holiday_country', sa.String(length=16), nullable=True),
    sa.Column('source_time', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('partner_id', name=op.f('pk_sla_partners'))
    )
    op.create_table('sla_policies',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('accept_within', sa.String(length=40), nullable=False),
    sa.Column('first_touch_within', sa.String(length=40), nullable=False),
    sa.Column('report_back_every', sa.String(length=40), nullable=False),
    sa.Column('clock', sa.String(length=16), nullable=False),
    sa.Column('on_accept_breach', sa.String(length=16), nullable=False),
    sa.Column('created_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_sla_policies'))
    )
    op.create_table('sla_alerts',
    sa.Column('alert_id', sa.String(length=36), nullable=False),
    sa.Column('clock_id', sa.String(length=36), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('partner_id', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('due_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('breached_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.String(length=32), nullable=True),
    sa.Column('acknowledged_at', shared.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=200), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('updated_at', shared.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['clock_id'], ['sla_clocks.clock_id'], name=op.f('fk_sla_alerts_clock_id_sla_clocks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('alert_id', name=op.f('pk_sla_alerts')),
    sa.UniqueConstraint('clock_id', 'period', name='uq_sla_alerts_clock_period')
    )
    with op.batch_alter_table('sla_alerts', schema=None) as batch_op:
        batch_op.create_index('ix_sla_alerts_breached', ['breached_at', 'alert_id'], unique=False)
        batch_op.create_index('ix_sla_alerts_partner_status', ['partner_id', 'status'], unique=False)
        batch_op.create_index('ix_sla_alerts_status_breached', ['status', 'breached_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sla_alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_sla_alerts_status_breached')
        batch_op.drop_index('ix_sla_alerts_partner_status')
        batch_op.drop_index('ix_sla_alerts_breached')

    op.drop_table('sla_alerts')
    op.drop_table('sla_policies')
    op.drop_table('sla_partners')
    with op.batch_alter_table('sla_clocks', schema=None) as batch_op:
        batch_op.drop_index('ix_sla_clocks_partner_kind')
        batch_op.drop_index('ix_sla_clocks_lead_kind_status')
        batch_op.drop_index('ix_sla_clocks_armed_due')

    op.drop_table('sla_clocks')
