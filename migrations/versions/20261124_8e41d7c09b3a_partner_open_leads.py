"""partners' open leads kept by triggers

Revision ID: 8e41d7c09b3a
Revises: c3f9a1d27e45
Create Date: 2026-11-24 17:35:00

Routing counted every open lead per partner on every batch (a scan that grew with the open leads: ~6 ms at
20,000). `partner_open_leads` holds the count instead, kept by triggers on `leads` in the transaction that
changes a lead, so no code path can forget it. Open means offered, accepted or working
(`services/lead_router/lead/states.OPEN_FOR_PARTNER`); changing that set needs a new migration of these
triggers.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '8e41d7c09b3a'
down_revision: str | None = 'c3f9a1d27e45'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "('offered', 'accepted', 'working')"

POSTGRESQL = [
    f"""CREATE FUNCTION partner_open_leads_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.partner_id IS NOT NULL AND OLD.status IN {OPEN} THEN
        UPDATE partner_open_leads SET open_leads = open_leads - 1 WHERE partner_id = OLD.partner_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.partner_id IS NOT NULL AND NEW.status IN {OPEN} THEN
        INSERT INTO partner_open_leads (partner_id, open_leads) VALUES (NEW.partner_id, 1)
        ON CONFLICT (partner_id) DO UPDATE SET open_leads = partner_open_leads.open_leads + 1;
    END IF;
    RETURN NULL;
END $$""",
    """CREATE TRIGGER leads_open_insert AFTER INSERT ON leads FOR EACH ROW
    WHEN (NEW.partner_id IS NOT NULL) EXECUTE FUNCTION partner_open_leads_track()""",
    f"""CREATE TRIGGER leads_open_update AFTER UPDATE OF status, partner_id ON leads FOR EACH ROW
    WHEN ((OLD.partner_id IS DISTINCT FROM NEW.partner_id
           OR (OLD.status IN {OPEN}) IS DISTINCT FROM (NEW.status IN {OPEN})))
    EXECUTE FUNCTION partner_open_leads_track()""",
    """CREATE TRIGGER leads_open_delete AFTER DELETE ON leads FOR EACH ROW
    WHEN (OLD.partner_id IS NOT NULL) EXECUTE FUNCTION partner_open_leads_track()""",
]

SQLITE = [
    f"""CREATE TRIGGER leads_open_insert AFTER INSERT ON leads
    WHEN NEW.partner_id IS NOT NULL AND NEW.status IN {OPEN} BEGIN
        INSERT INTO partner_open_leads (partner_id, open_leads) VALUES (NEW.partner_id, 1)
        ON CONFLICT (partner_id) DO UPDATE SET open_leads = open_leads + 1;
    END""",
    f"""CREATE TRIGGER leads_open_update AFTER UPDATE OF status, partner_id ON leads
    WHEN OLD.partner_id IS NOT NEW.partner_id OR (OLD.status IN {OPEN}) IS NOT (NEW.status IN {OPEN}) BEGIN
        UPDATE partner_open_leads SET open_leads = open_leads - 1
        WHERE partner_id = OLD.partner_id AND OLD.status IN {OPEN};
        INSERT INTO partner_open_leads (partner_id, open_leads)
        SELECT NEW.partner_id, 1 WHERE NEW.partner_id IS NOT NULL AND NEW.status IN {OPEN}
        ON CONFLICT (partner_id) DO UPDATE SET open_leads = open_leads + 1;
    END""",
    f"""CREATE TRIGGER leads_open_delete AFTER DELETE ON leads
    WHEN OLD.partner_id IS NOT NULL AND OLD.status IN {OPEN} BEGIN
        UPDATE partner_open_leads SET open_leads = open_leads - 1 WHERE partner_id = OLD.partner_id;
    END""",
]


def upgrade() -> None:
    op.create_table('partner_open_leads',
    sa.Column('partner_id', sa.String(length=64), nullable=False),
    sa.Column('open_leads', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('partner_id', name=op.f('pk_partner_open_leads'))
    )
    op.execute(f"INSERT INTO partner_open_leads (partner_id, open_leads) SELECT partner_id, count(*) FROM leads "
               f"WHERE partner_id IS NOT NULL AND status IN {OPEN} GROUP BY partner_id")
    for statement in POSTGRESQL if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    for trigger in ("leads_open_insert", "leads_open_update", "leads_open_delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (" ON leads" if op.get_bind().dialect.name == "postgresql"
                                                          else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS partner_open_leads_track()")
    op.drop_table('partner_open_leads')
