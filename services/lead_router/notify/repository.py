from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Partner, WebhookDelivery
from shared.pagination import newest_first

PENDING, DELIVERED, FAILED, DISABLED = "pending", "delivered", "failed", "disabled"


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(self, partner_id: str, *, after: tuple[datetime, str] | None, limit: int) -> list[WebhookDelivery]:
        query = select(WebhookDelivery).where(WebhookDelivery.partner_id == partner_id)
        query = newest_first(query, WebhookDelivery.created_at, WebhookDelivery.delivery_id, after, limit)
        return list((await self.session.scalars(query)).all())

    async def get(self, partner_id: str, delivery_id: str, *, lock: bool = False) -> WebhookDelivery | None:
        query = select(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery_id,
                                              WebhookDelivery.partner_id == partner_id)
        if lock:
            query = query.with_for_update()
        return await self.session.scalar(query)

    async def lock(self, delivery_id: str) -> WebhookDelivery | None:
        return await self.session.scalar(select(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery_id)
                                         .with_for_update())

    async def due(self, now: datetime, *, limit: int) -> list[WebhookDelivery]:
        """Pending deliveries whose time has come, oldest due first, locked. On PostgreSQL rows another
        worker is claiming are skipped; SQLite takes the write lock for the whole transaction instead."""
        query = (select(WebhookDelivery)
                 .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now)
                 .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.delivery_id).limit(limit)
                 .with_for_update(skip_locked=True))
        return list((await self.session.scalars(query)).all())

    async def partners(self, partner_ids: Iterable[str]) -> dict[str, Partner]:
        ids = sorted(set(partner_ids))
        if not ids:
            return {}
        return {p.partner_id: p for p in (await self.session.scalars(
            select(Partner).where(Partner.partner_id.in_(ids)))).all()}

    async def disable_pending(self, partner_id: str, *, error: str) -> None:
        await self.session.execute(
            update(WebhookDelivery).where(WebhookDelivery.partner_id == partner_id, WebhookDelivery.status == PENDING)
            .values(status=DISABLED, next_attempt_at=None, claim_token=None, last_error=error)
            .execution_options(synchronize_session=False))

    async def pending_stats(self) -> tuple[int, datetime | None]:
        """How many deliveries are pending, and when the oldest of them was staged."""
        count, oldest = (await self.session.execute(
            select(func.count(), func.min(WebhookDelivery.created_at)).where(WebhookDelivery.status == PENDING))).one()
        if isinstance(oldest, str):  # SQLite's MIN() loses the column type (and the zone: stored in UTC)
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return int(count), oldest


def ended_before(before: datetime) -> ColumnElement[bool]:
    """Deliveries that ended before `before` (their attempts go with them): delivered then, or failed or disabled
    with their last window (`give_up_at`, renewed by a retry) closed then. Pending ones never."""
    return or_(and_(WebhookDelivery.status == DELIVERED, WebhookDelivery.delivered_at < before),
               and_(WebhookDelivery.status.in_((FAILED, DISABLED)), WebhookDelivery.give_up_at < before))
