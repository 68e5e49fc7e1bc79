from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.lead_router.lead.states import OPEN_FOR_PARTNER
from shared.models import Lead, Partner


class PartnerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, partner_id: str) -> Partner | None:
        return await self.session.get(Partner, partner_id)

    async def page(self, *, after: str | None, limit: int) -> list[Partner]:
        query = select(Partner).order_by(Partner.partner_id).limit(limit)
        if after is not None:
            query = query.where(Partner.partner_id > after)
        return list((await self.session.scalars(query)).all())

    async def all(self) -> list[Partner]:
        return list((await self.session.scalars(select(Partner).order_by(Partner.partner_id))).all())

    async def all_with_open_leads(self) -> list[tuple[Partner, int]]:
        """Every partner with its open leads counted, in one statement (an index range per partner)."""
        count = (select(func.count()).where(Lead.partner_id == Partner.partner_id, Lead.status.in_(OPEN_FOR_PARTNER))
                 .correlate(Partner).scalar_subquery())
        rows = await self.session.execute(select(Partner, count).order_by(Partner.partner_id))
        return [(partner, int(n or 0)) for partner, n in rows.all()]

    async def open_leads(self, partner_ids: list[str] | None = None) -> dict[str, int]:
        query = (select(Lead.partner_id, func.count()).where(Lead.status.in_(OPEN_FOR_PARTNER))
                 .group_by(Lead.partner_id))
        if partner_ids is not None:
            query = query.where(Lead.partner_id.in_(partner_ids))
        return {pid: int(n) for pid, n in (await self.session.execute(query)).all() if pid is not None}
