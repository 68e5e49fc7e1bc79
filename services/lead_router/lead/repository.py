from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Lead, LeadEvent, LeadOffer
from shared.pagination import newest_first


class LeadRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, lead_id: str, *, lock: bool = False) -> Lead | None:
        if "\x00" in lead_id:  # no such id can exist, and PostgreSQL refuses NUL in text
            return None
        query = select(Lead).where(Lead.lead_id == lead_id)
        if lock:
            query = query.with_for_update()
        return await self.session.scalar(query)

    async def page(self, *, status: str | None, partner_id: str | None, source: str | None,
                   after: tuple[datetime, str] | None, limit: int) -> list[Lead]:
        """Newest first; the cursor is the last row's (created_at, lead_id)."""
        query = newest_first(select(Lead), Lead.created_at, Lead.lead_id, after, limit)
        if status is not None:
            query = query.where(Lead.status == status)
        if partner_id is not None:
            query = query.where(Lead.partner_id == partner_id)
        if source is not None:
            query = query.where(Lead.source == source)
        return list((await self.session.scalars(query)).all())

    async def timeline(self, lead_id: str) -> list[LeadEvent]:
        return list((await self.session.scalars(
            select(LeadEvent).where(LeadEvent.lead_id == lead_id).order_by(LeadEvent.seq))).all())

    async def latest_offer(self, lead_id: str, partner_id: str) -> LeadOffer | None:
        return await self.session.scalar(select(LeadOffer).where(
            LeadOffer.lead_id == lead_id, LeadOffer.partner_id == partner_id)
            .order_by(LeadOffer.offer_id.desc()).limit(1))
