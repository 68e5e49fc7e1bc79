"""outbox notify

Revision ID: e5a7c9b1d3f2
Revises: c3f9a1d27e45
Create Date: 2026-11-24 14:30:00

On PostgreSQL every transaction that adds outbox rows sends one `NOTIFY leadrouter_outbox` when it commits,
so the relays of every process wake at once instead of at their next poll (SQLite has no such thing; its
relays poll and are woken by commits in their own process).
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'e5a7c9b1d3f2'
down_revision: str | None = 'c3f9a1d27e45'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""
        CREATE OR REPLACE FUNCTION leadrouter_outbox_notify() RETURNS trigger AS $$
        BEGIN
          PERFORM pg_notify('leadrouter_outbox', '');
          RETURN NULL;
        END $$ LANGUAGE plpgsql""")
    op.execute("""
        CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
        FOR EACH STATEMENT EXECUTE FUNCTION leadrouter_outbox_notify()""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS leadrouter_outbox_notify()")
