"""PostgreSQL: new leads stored by one autocommit statement instead of a transaction.

The group-commit writer's transaction costs four round trips (BEGIN; the leads' INSERT; the staged statement
with their events and timeline rows; COMMIT), each a wake-up of the API and of a PostgreSQL backend on a busy
box. Most requests carry one new lead, and for those this writes the batch with one statement on a connection
outside any transaction: data-modifying CTEs insert the leads (`ON CONFLICT DO NOTHING`, as intake's INSERT
does), and for those inserted only, their `webhook-id` receipts, `lead.received` outbox rows and timeline rows,
then the relay's `NOTIFY`. One statement is one transaction: a lead commits with its rows or not at all. The
rows come as one array a column (`unnest`), so every batch size is the same statement text, prepared once a
connection.

Left to the transactional path (the writer's session, unchanged), which answers them as it always did:
- a request with more than one entry, or a change to a known lead (a request's leads are stored all or none);
- a lead not inserted: a later delivery of a known lead (by `(source, external_id)` or open email), merged there;
- a `webhook-id` received before (a duplicate there), or twice in the batch (all but the first);
- the whole batch when the statement fails. A `webhook-id` stored by another process while this statement ran
  fails the receipt's plain INSERT (a unique violation), and with it the statement: as with `_claim`, exactly
  one delivery keeps its lead, and the session path finds the receipt and answers a duplicate.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeEngine

from services.lead_router.intake.schemas import LeadIn
from services.lead_router.intake.service import lead_row, new_lead, received_data
from services.lead_router.lead import timeline
from shared.config import Settings
from shared.models import Lead, LeadEvent, OutboxMessage, WebhookReceipt
from shared.observability import DB_STATEMENTS
from shared.outbox import event_row, wake_channel
from shared.wakeup import OUTBOX_COMMITTED


@dataclass(frozen=True)
class Stored:
    """What the statement did: the ids of the leads it inserted (the others are the caller's to store)."""

    inserted: set[str]
    lead_ids: list[str]  # one a lead given, in order


class DirectIntake:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._converters: dict[_Columns, list[tuple[int, str, Callable[[Any], Any] | None]]] = {}

    async def store(self, items: Sequence[tuple[str, LeadIn, str | None]], *, now: datetime,
                    wake_relay: bool) -> Stored:
        """Insert these new leads (source, body, webhook-id each; no webhook-id twice) with their events.
        `wake_relay`: wake the outbox relay for them (else the caller has a later commit do it)."""
        leads = [new_lead(source, body, now) for source, body, _ in items]
        rows: list[tuple[dict[str, Any], ...]] = []
        for lead in leads:
            ev, timeline_row = timeline.entry(lead, "lead.received", data=received_data(lead), at=now)
            rows.append((lead_row(lead), event_row(self.settings.leads_topic, ev), timeline_row))
        shape = tuple(tuple(part) for part in rows[0])
        statement, columns = _statement(shape)
        if columns not in self._converters:
            self._converters[columns] = _converters(columns, self.engine.dialect)
        arrays = [[convert(row[part][name]) for row in rows] if convert else [row[part][name] for row in rows]
                  for part, name, convert in self._converters[columns]]
        arrays.append([webhook_id for _, _, webhook_id in items])
        channel = wake_channel() if wake_relay else None
        async with self.engine.connect() as connection:
            driver: Any = (await connection.get_raw_connection()).driver_connection
            DB_STATEMENTS.inc()
            try:
                inserted = set(await driver.fetchval(statement, *arrays, channel))
            except BaseException:
                if driver.is_closed():  # SQLAlchemy did not see it fail: keep it out of the pool
                    await connection.invalidate()
                raise
        if inserted and wake_relay:
            OUTBOX_COMMITTED.set()  # this process's relay, when it leads (the NOTIFY wakes another's)
        return Stored(inserted, [lead.lead_id for lead in leads])


_TABLES: tuple[Table, ...] = tuple(cast(Table, model.__table__) for model in (Lead, OutboxMessage, LeadEvent))
_PREFIXES = ("l", "o", "t")  # v's columns: a table's prefix and its column name (the tables share names)
_Columns = tuple[tuple[int, str], ...]  # (part, column name) of every array but the webhook-ids, in order


@functools.lru_cache(maxsize=8)
def _statement(shape: tuple[tuple[str, ...], ...]) -> tuple[str, _Columns]:
    """The statement for rows with these columns (a lead's, its outbox row's, its timeline row's): one array
    parameter a column, then the webhook-ids, then the channel to notify (NULL: none)."""
    dialect = asyncpg_dialect()
    quote = dialect.identifier_preparer
    columns: _Columns = tuple((part, name) for part, names in enumerate(shape) for name in names)
    casts = [f"${i}::{_array(_TABLES[part].c[name].type, dialect)}" for i, (part, name) in enumerate(columns, start=1)]
    webhook_ids, channel = len(casts) + 1, len(casts) + 2
    casts.append(f"${webhook_ids}::{_array(WebhookReceipt.__table__.c.webhook_id.type, dialect)}")
    names = [f"{_PREFIXES[part]}_{name}" for part, name in columns] + ["w_webhook_id"]

    def insert(part: int, table: Table) -> str:
        listed = ", ".join(quote.quote(name) for name in shape[part])
        selected = ", ".join(f"v.{_PREFIXES[part]}_{name}" for name in shape[part])
        return (f"INSERT INTO {quote.format_table(table)} ({listed}) SELECT {selected} FROM v "
                f"JOIN l ON l.lead_id = v.l_lead_id ORDER BY v.n")

    leads, receipts = quote.format_table(_TABLES[0]), quote.format_table(cast(Table, WebhookReceipt.__table__))
    lead_columns = ", ".join(quote.quote(name) for name in shape[0])
    sql = (f"WITH v AS (SELECT * FROM unnest({', '.join(casts)}) WITH ORDINALITY AS v({', '.join(names)}, n)), "
           f"l AS (INSERT INTO {leads} ({lead_columns}) "
           f"SELECT {', '.join(f'v.l_{name}' for name in shape[0])} FROM v WHERE v.w_webhook_id IS NULL OR NOT EXISTS "
           f"(SELECT 1 FROM {receipts} w WHERE w.source = v.l_source AND w.webhook_id = v.w_webhook_id) "
           f"ORDER BY v.n ON CONFLICT DO NOTHING RETURNING lead_id), "
           # A plain INSERT: a receipt another transaction holds fails the statement (see the module's doc).
           f"r AS (INSERT INTO {receipts} (source, webhook_id, lead_id, received_at) "
           f"SELECT v.l_source, v.w_webhook_id, v.l_lead_id, v.l_created_at FROM v JOIN l ON l.lead_id = v.l_lead_id "
           f"WHERE v.w_webhook_id IS NOT NULL), "
           f"o AS ({insert(1, _TABLES[1])}), t AS ({insert(2, _TABLES[2])}) "
           f"SELECT array(SELECT lead_id FROM l), "
           f"(SELECT pg_notify(${channel}, '') WHERE ${channel}::text IS NOT NULL AND EXISTS (SELECT 1 FROM l))")
    return sql, columns


def _array(type_: TypeEngine[Any], dialect: Dialect) -> str:
    """An array of the column's type without its length: a cast to `VARCHAR(n)` would cut a longer value,
    where the INSERT into the column refuses it."""
    return re.sub(r"\(\d+\)", "", type_.compile(dialect=dialect)) + "[]"


def _converters(columns: _Columns, dialect: Dialect) -> list[tuple[int, str, Callable[[Any], Any] | None]]:
    """Each column's bind processor (JSON to text, timestamps to UTC), as the ORM applies it."""
    return [(part, name, _TABLES[part].c[name].type.bind_processor(dialect)) for part, name in columns]
