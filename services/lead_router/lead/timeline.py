"""Writing a lead's history: one timeline row and one outbox CloudEvent, same id, same transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.config import Settings
from shared.db import stage_insert
from shared.events import ROUTER_SOURCE
from shared.models import Lead, LeadEvent, utcnow
from shared.outbox import add_event


def record(session: AsyncSession, settings: Settings, lead: Lead, name: str, *, data: dict[str, Any] | None = None,
           partner_id: str | None = None, at: datetime | None = None,
           event_only: dict[str, Any] | None = None) -> str:
    """Append `name` (e.g. `lead.routed`) to the lead's timeline and stage its event; returns the event id.
    `event_only` goes into the event's data but not the timeline (facts other services need, not history)."""
    at = at or utcnow()
    payload = {"lead_id": lead.lead_id, "status": lead.status, "partner_id": partner_id or lead.partner_id,
               "source": lead.source, **(data or {}), **(event_only or {})}
    ev = add_event(session, topic=settings.leads_topic, name=name, source=ROUTER_SOURCE, subject=lead.lead_id,
                   data=payload, at=at)
    stage_insert(session, LeadEvent, {"event_id": ev.id, "lead_id": lead.lead_id, "type": name, "at": at,
                                      "partner_id": partner_id or lead.partner_id, "data": data or {}})
    return ev.id
