"""Writing a lead's history: one timeline row and one outbox CloudEvent, same id, same transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.config import Settings
from shared.db import stage_insert
from shared.events import ROUTER_SOURCE, CloudEvent, new_event
from shared.models import Lead, LeadEvent, utcnow
from shared.outbox import stage_event


def record(session: AsyncSession, settings: Settings, lead: Lead, name: str, *, data: dict[str, Any] | None = None,
           partner_id: str | None = None, at: datetime | None = None,
           event_only: dict[str, Any] | None = None) -> str:
    """Append `name` (e.g. `lead.routed`) to the lead's timeline and stage its event; returns the event id.
    `event_only` goes into the event's data but not the timeline (facts other services need, not history)."""
    ev, timeline_row = entry(lead, name, data=data, partner_id=partner_id, at=at, event_only=event_only)
    stage_event(session, settings.leads_topic, ev)
    stage_insert(session, LeadEvent, timeline_row)
    return ev.id


def entry(lead: Lead, name: str, *, data: dict[str, Any] | None = None, partner_id: str | None = None,
          at: datetime | None = None, event_only: dict[str, Any] | None = None) -> tuple[CloudEvent, dict[str, Any]]:
    """The event and the timeline row that `record` stages (for writers that insert them themselves)."""
    at = at or utcnow()
    payload = {"lead_id": lead.lead_id, "status": lead.status, "partner_id": partner_id or lead.partner_id,
               "source": lead.source, **(data or {}), **(event_only or {})}
    ev = new_event(name, source=ROUTER_SOURCE, subject=lead.lead_id, data=payload, at=at)
    return ev, {"event_id": ev.id, "lead_id": lead.lead_id, "type": name, "at": at,
                "partner_id": partner_id or lead.partner_id, "data": data or {}}
