"""Writing a lead's history: one timeline row and one outbox CloudEvent, same id, same transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.config import Settings
from shared.db import stage_insert
from shared.events import ROUTER_SOURCE, new_event
from shared.models import Lead, LeadEvent, OutboxMessage, utcnow
from shared.outbox import event_row
from shared.wakeup import OUTBOX_COMMITTED


def record(session: AsyncSession, settings: Settings, lead: Lead, name: str, *, data: dict[str, Any] | None = None,
           partner_id: str | None = None, at: datetime | None = None,
           event_only: dict[str, Any] | None = None) -> str:
    """Append `name` (e.g. `lead.routed`) to the lead's timeline and stage its event; returns the event id.
    `event_only` goes into the event's data but not the timeline (facts other services need, not history)."""
    outbox_row, timeline_row = rows(settings, lead, name, data=data, partner_id=partner_id, at=at,
                                    event_only=event_only)
    stage_insert(session, OutboxMessage, outbox_row)
    OUTBOX_COMMITTED.mark(session)
    stage_insert(session, LeadEvent, timeline_row)
    return str(timeline_row["event_id"])


def rows(settings: Settings, lead: Lead, name: str, *, data: dict[str, Any] | None = None,
         partner_id: str | None = None, at: datetime | None = None,
         event_only: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The outbox row and the timeline row that `record` stages (for writers that insert them themselves)."""
    at = at or utcnow()
    payload = {"lead_id": lead.lead_id, "status": lead.status, "partner_id": partner_id or lead.partner_id,
               "source": lead.source, **(data or {}), **(event_only or {})}
    ev = new_event(name, source=ROUTER_SOURCE, subject=lead.lead_id, data=payload, at=at)
    return event_row(settings.leads_topic, ev), {"event_id": ev.id, "lead_id": lead.lead_id, "type": name,
                                                 "at": at, "partner_id": partner_id or lead.partner_id,
                                                 "data": data or {}}
