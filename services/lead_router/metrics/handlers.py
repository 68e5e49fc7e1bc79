"""What the metrics keep from `<prefix>.sla`: the monitor's verdict on each offer's SLA clocks.

`sla.clock_ended` says an accept or first-touch clock of a lead's offer to a partner ended `met` (on time)
or `missed` (late, or recalled). The verdict is kept on that offer (a partner is offered a lead at most
once), so the SLA-met rates are one `GROUP BY` over offers and work when the monitor has its own database.
Setting a verdict twice sets the same value: redelivery is harmless.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events import CloudEvent
from shared.models import LeadOffer

VERDICTS = ("met", "missed")
COLUMN = {"accept": "accept_sla", "first_touch": "first_touch_sla"}


async def handle_clock_ended(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    column = COLUMN.get(str(data.get("kind")))
    verdict = data.get("verdict")
    lead_id, partner_id = data.get("lead_id") or event.subject, data.get("partner_id")
    if column is None or verdict not in VERDICTS or not lead_id or not partner_id:
        return
    offer = await session.scalar(select(LeadOffer).where(LeadOffer.lead_id == str(lead_id),
                                                         LeadOffer.partner_id == str(partner_id))
                                 .order_by(LeadOffer.offer_id.desc()).limit(1))
    if offer is not None:
        setattr(offer, column, verdict)
