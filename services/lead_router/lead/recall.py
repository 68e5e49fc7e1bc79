"""Recall: the SLA monitor's `sla.breached` with action `recall` takes a lead back from a late partner.

The monitor decides *that* the accept deadline passed; lead_router decides whether the lead can still be
taken back: only while it is still `offered` to that same partner. If the partner accepted or rejected
in the meantime (or the lead was offered to someone else), the breach changes nothing here and the
monitor resolves its alert when it sees that step. Otherwise the partner's open offer ends `recalled`,
the lead returns to `received` and `lead.recalled` is recorded; the router routes on `lead.recalled` to
the next eligible partner, never to one whose offer was rejected or recalled, and a late accept from the
recalled partner gets 409.
"""

from __future__ import annotations

import functools
import logging

from sqlalchemy.ext.asyncio import AsyncSession

from services.lead_router.lead import timeline
from services.lead_router.lead.repository import LeadRepository
from services.lead_router.lead.states import OFFERED, RECEIVED
from services.lead_router.notify import service as notify
from services.lead_router.routing.repository import RoutingRepository
from shared.config import Settings
from shared.events import CloudEvent
from shared.kafka import Handler
from shared.models import utcnow

log = logging.getLogger(__name__)

RECALL_REASON = "accept_overdue"


async def handle_sla_breached(session: AsyncSession, event: CloudEvent, *, settings: Settings) -> None:
    """Recall the lead if the breach asks for it and the lead is still offered to the late partner."""
    data = event.data
    if data.get("action") != "recall" or data.get("kind", RECALL_REASON) != RECALL_REASON:
        return
    lead_id = str(data.get("lead_id") or event.subject or "")
    partner_id = data.get("partner_id")
    # Taking leads back changes partners' open-lead counts (rows the triggers on `leads` update), as routing
    # does: serialized with routing, a batch of recalls and a routing batch never lock two partners' counts
    # in opposite orders.
    await RoutingRepository(session).lock_routing()
    repo = LeadRepository(session)
    lead = await repo.get(lead_id, lock=True) if lead_id else None
    if lead is None or lead.status != OFFERED or not partner_id or lead.partner_id != partner_id:
        log.info("recall of lead %s from %s: nothing to do (no longer offered to it)", lead_id, partner_id)
        return
    now = utcnow()
    offer = await repo.latest_offer(lead_id, partner_id)
    if offer is not None and offer.status == "offered":
        offer.status, offer.responded_at, offer.reason = "recalled", now, RECALL_REASON
    lead.status, lead.partner_id, lead.updated_at = RECEIVED, None, now
    timeline.record(session, settings, lead, "lead.recalled", partner_id=partner_id, at=now,
                    data={"reason": RECALL_REASON, "alert_id": data.get("alert_id")})
    await notify.stage_recall(session, settings=settings, partner_id=partner_id, lead=lead, at=now)
    log.info("recalled lead %s from %s (accept overdue)", lead_id, partner_id)


def sla_handlers(settings: Settings) -> dict[str, Handler]:
    """Handlers for `<prefix>.sla` in lead_router."""
    return {"sla.breached": functools.partial(handle_sla_breached, settings=settings)}
