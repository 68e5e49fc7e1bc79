"""a version of routing's inputs (partners, rule sets), changed by triggers

Revision ID: 2f6b9d4e8a17
Revises: 8e41d7c09b3a
Create Date: 2026-12-05 08:00:00

Routing read every partner and the active rule set in each routing transaction (two statements of about ten,
at ~2 ms each under load on the path from webhook to offer). `routing_inputs_version` holds one row whose
`version` changes in every transaction that writes `partners` or `rule_sets` (statement triggers on
PostgreSQL, truncation included; row triggers on SQLite), so a router reuses what it read while the version is
the same. A missing row (the table emptied) is written again by the next change, from a random version, so
a version read before cannot come back by chance.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '2f6b9d4e8a17'
down_revision: str | None = '8e41d7c09b3a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("partners", "rule_sets")

POSTGRESQL = [
    """CREATE FUNCTION routing_inputs_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO routing_inputs_version (id, version) VALUES (1, (random() * 4e18)::bigint)
    ON CONFLICT (id) DO UPDATE SET version = routing_inputs_version.version + 1;
    RETURN NULL;
END $$""",
    *(f"""CREATE TRIGGER {table}_routing_inputs AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION routing_inputs_changed()""" for table in TABLES),
]

SQLITE = [
    f"""CREATE TRIGGER {table}_routing_inputs_{op_name.lower()} AFTER {op_name} ON {table} BEGIN
        INSERT INTO routing_inputs_version (id, version) VALUES (1, abs(random() % 4000000000000000000))
        ON CONFLICT (id) DO UPDATE SET version = version + 1;
    END"""
    for table in TABLES for op_name in ("INSERT", "UPDATE", "DELETE")
]


def upgrade() -> None:
    op.create_table('routing_inputs_version',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_routing_inputs_version'))
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    op.execute("INSERT INTO routing_inputs_version (id, version) VALUES (1, " +
               ("(random() * 4e18)::bigint)" if postgres else "abs(random() % 4000000000000000000))"))
    for statement in POSTGRESQL if postgres else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_routing_inputs ON {table}")
        op.execute("DROP FUNCTION IF EXISTS routing_inputs_changed()")
    else:
        for table in TABLES:
            for op_name in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_routing_inputs_{op_name}")
    op.drop_table('routing_inputs_version')
