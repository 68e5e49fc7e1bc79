from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Partner, PartnerLoad


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

    async def open_leads(self, partner_ids: list[str] | None = None) -> dict[str, int]:
        """Open leads (offered, accepted, working) per partner, as the triggers on `leads` keep them."""
        query = select(PartnerLoad.partner_id, PartnerLoad.open_leads)
        if partner_ids is not None:
            query = query.where(PartnerLoad.partner_id.in_(partner_ids))
        return {pid: int(n) for pid, n in (await self.session.execute(query)).all() if n}
