"""offers: ix_lead_offers_partner_offered covers the metrics' columns on PostgreSQL

Revision ID: 520f7582e3a1
Revises: 5e1c0a7d2b61
Create Date: 2026-11-24 16:05:00.000000

The metrics' PostgreSQL path reads each (partner, window) as one range of (partner_id, offered_at); with the
columns it aggregates in the index (INCLUDE) those reads are index-only scans. SQLite has no INCLUDE: its
plain index stays as it is.

The new index is built under a temporary name before the old one is dropped: building takes only a SHARE
lock (writes to lead_offers wait, reads go on), while DROP INDEX takes an ACCESS EXCLUSIVE lock held until
the migration's transaction commits, so it comes last, when nothing slow is left to do.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '520f7582e3a1'
down_revision: str | None = '5e1c0a7d2b61'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = 'ix_lead_offers_partner_offered'
BUILDING = 'ix_lead_offers_partner_offered_new'
COLUMNS = ['partner_id', 'offered_at']
INCLUDE = ['status', 'reason', 'first_touch_at', 'accept_sla', 'first_touch_sla', 'outcome', 'amount', 'accept_s',
           'first_touch_s']


def _replace(include: list[str]) -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.create_index(BUILDING, 'lead_offers', COLUMNS, unique=False, postgresql_include=include)
    op.drop_index(NAME, table_name='lead_offers')
    op.execute(f'ALTER INDEX {BUILDING} RENAME TO {NAME}')


def upgrade() -> None:
    _replace(INCLUDE)


def downgrade() -> None:
    _replace([])
