from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import LeadOffer, RoutingState, RuleSet


class RoutingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def active_rule_set(self) -> RuleSet | None:
        return await self.session.scalar(select(RuleSet).order_by(RuleSet.version.desc()).limit(1))

    async def next_version(self) -> int:
        return int(await self.session.scalar(select(func.coalesce(func.max(RuleSet.version), 0))) or 0) + 1

    async def states(self, *, lock: bool) -> dict[str, RoutingState]:
        query = select(RoutingState)
        if lock:
            query = query.with_for_update()
        return {row.rule: row for row in (await self.session.scalars(query)).all()}

    async def save_state(self, rows: dict[str, RoutingState], rule: str, state: dict[str, Any]) -> None:
        row = rows.get(rule)
        if row is None:
            self.session.add(RoutingState(rule=rule, state=state))
        else:
            row.state = state

    async def excluded_partners(self, lead_id: str) -> set[str]:
        """Partners that rejected this lead or had it recalled: never offered it again."""
        rows = await self.session.scalars(select(LeadOffer.partner_id).where(
            LeadOffer.lead_id == lead_id, LeadOffer.status.in_(("rejected", "recalled"))))
        return set(rows.all())
