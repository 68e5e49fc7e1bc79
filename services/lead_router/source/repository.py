"""Every query on the `sources` table."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Source


class SourceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, name: str, *, for_update: bool = False) -> Source | None:
        query = select(Source).where(Source.name == name)
        return await self.session.scalar(query.with_for_update() if for_update else query)

    async def page(self, *, after: str | None, limit: int) -> Sequence[Source]:
        query = select(Source).order_by(Source.name).limit(limit)
        if after is not None:
            query = query.where(Source.name > after)
        return (await self.session.scalars(query)).all()

    async def all(self) -> Sequence[Source]:
        return (await self.session.scalars(select(Source))).all()
