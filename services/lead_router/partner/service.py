"""Partners and their API keys. Every upsert publishes `partner.upserted` (the SLA monitor's projection)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.lead_router.partner.repository import PartnerRepository
from services.lead_router.partner.schemas import ApiKeyCreated, PartnerRead, PartnerUpsert
from shared.config import Settings
from shared.errors import NotFound
from shared.events import ROUTER_SOURCE
from shared.models import Partner, PartnerApiKey, utcnow
from shared.outbox import add_event
from shared.security import new_api_key


def to_read(partner: Partner, open_leads: int = 0) -> PartnerRead:
    return PartnerRead(
        partner_id=partner.partner_id, name=partner.name, tier=partner.tier,  # type: ignore[arg-type]
        active=partner.active, territories=partner.territories, products=partner.products,  # type: ignore[arg-type]
        industries=partner.industries, capacity={"max_open_leads": partner.max_open_leads},  # type: ignore[arg-type]
        timezone=partner.timezone, business_hours=partner.business_hours,  # type: ignore[arg-type]
        holiday_country=partner.holiday_country, fiscal_year_start_month=partner.fiscal_year_start_month,
        webhook_url=partner.webhook_url, open_leads=open_leads,  # type: ignore[arg-type]
        webhook_enabled=partner.webhook_enabled is not False,
        operating_periods=partner.operating_periods, objectives=partner.objectives or [],  # type: ignore[arg-type]
        created_at=partner.created_at, updated_at=partner.updated_at)


def _assign(partner: Partner, body: PartnerUpsert, now: datetime) -> None:
    partner.name = body.name
    partner.tier = body.tier
    partner.active = body.active
    partner.territories = [t.model_dump(exclude_none=True) for t in body.territories]
    partner.products = list(body.products)
    partner.industries = list(body.industries)
    partner.max_open_leads = body.capacity.max_open_leads
    partner.timezone = body.timezone
    partner.business_hours = body.business_hours.model_dump()
    partner.holiday_country = body.holiday_country
    partner.fiscal_year_start_month = body.fiscal_year_start_month
    partner.webhook_url = str(body.webhook_url) if body.webhook_url else None
    if partner.webhook_url is not None:  # setting the URL (again) turns a webhook that answered 410 back on
        partner.webhook_enabled = True
    partner.operating_periods = body.operating_periods.model_dump() if body.operating_periods else None
    partner.objectives = [o.model_dump() for o in body.objectives]
    partner.updated_at = now


async def upsert_partner(session: AsyncSession, partner_id: str, body: PartnerUpsert, *,
                         settings: Settings) -> tuple[PartnerRead, bool]:
    """Create or replace; returns the partner and whether it was created. Of two concurrent creates of
    the same partner one inserts and the other, finding the row once the insert failed, replaces it."""
    repo = PartnerRepository(session)
    partner = await repo.get(partner_id)
    created = partner is None
    now = utcnow()
    if partner is None:
        partner = Partner(partner_id=partner_id, created_at=now)
        _assign(partner, body, now)
        try:
            async with session.begin_nested():
                session.add(partner)
                await session.flush()
        except IntegrityError:
            partner = await repo.get(partner_id)
            if partner is None:
                raise
            created = False
    if not created:
        _assign(partner, body, now)
    await session.flush()
    read = to_read(partner, (await repo.open_leads([partner_id])).get(partner_id, 0))
    add_event(session, topic=settings.partners_topic, name="partner.upserted", source=ROUTER_SOURCE,
              subject=partner_id, data=read.model_dump(mode="json", exclude={"open_leads", "webhook_enabled"}))
    return read, created


async def get_partner(session: AsyncSession, partner_id: str) -> PartnerRead:
    repo = PartnerRepository(session)
    partner = await repo.get(partner_id)
    if partner is None:
        raise NotFound(f"No partner {partner_id!r}.")
    return to_read(partner, (await repo.open_leads([partner_id])).get(partner_id, 0))


async def list_partners(session: AsyncSession, *, after: str | None, limit: int) -> list[PartnerRead]:
    repo = PartnerRepository(session)
    partners = await repo.page(after=after, limit=limit)
    counts = await repo.open_leads([p.partner_id for p in partners])
    return [to_read(p, counts.get(p.partner_id, 0)) for p in partners]


async def create_api_key(session: AsyncSession, partner_id: str) -> ApiKeyCreated:
    if await session.get(Partner, partner_id) is None:
        raise NotFound(f"No partner {partner_id!r}.")
    key_id, api_key, secret_hash = new_api_key()
    session.add(PartnerApiKey(key_id=key_id, partner_id=partner_id, secret_hash=secret_hash))
    await session.flush()
    return ApiKeyCreated(key_id=key_id, api_key=api_key)


async def revoke_api_key(session: AsyncSession, partner_id: str, key_id: str) -> None:
    key = None if "\x00" in key_id else await session.scalar(select(PartnerApiKey).where(  # NUL: PostgreSQL refuses
        PartnerApiKey.key_id == key_id, PartnerApiKey.partner_id == partner_id))
    if key is None:
        raise NotFound(f"No API key {key_id!r} for partner {partner_id!r}.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
