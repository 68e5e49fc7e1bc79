"""Intake: store a lead durably with its `lead.received` event, once per (source, external_id) and webhook-id."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.lead_router.intake.schemas import IntakeAccepted, LeadIn
from services.lead_router.lead import timeline
from services.lead_router.lead.states import NURTURING, RECEIVED
from shared.config import Settings
from shared.db import is_postgres
from shared.models import Base, Lead, WebhookReceipt, utcnow

CONTACT_FIELDS = ("email", "first_name", "last_name", "phone", "title")


def received_data(lead: Lead) -> dict[str, Any]:
    return {"external_id": lead.external_id, "score": lead.score, "product": lead.product,
            "estimated_value": lead.estimated_value, "campaign": lead.campaign, "company": lead.company}


def _apply(lead: Lead, body: LeadIn) -> None:
    lead.score = body.score
    lead.product = body.product
    lead.estimated_value = body.estimated_value
    lead.campaign = body.campaign
    lead.company = body.company.model_dump(mode="json")
    lead.contact = body.model_dump(mode="json", include=set(CONTACT_FIELDS))
    lead.occurred_at = body.occurred_at


async def ingest(session: AsyncSession, *, source: str, body: LeadIn, webhook_id: str | None,
                 settings: Settings) -> IntakeAccepted:
    if webhook_id:
        receipt = await session.get(WebhookReceipt, (source, webhook_id))
        if receipt is not None:
            lead = await session.get(Lead, receipt.lead_id)
            return IntakeAccepted(lead_id=receipt.lead_id, status=lead.status if lead else RECEIVED,
                                  duplicate=True)
    lead = Lead(lead_id=str(uuid.uuid4()), source=source, external_id=body.external_id, status=RECEIVED,
                created_at=utcnow())
    lead.updated_at = lead.created_at
    _apply(lead, body)
    if await _insert_new(session, lead):
        timeline.record(session, settings, lead, "lead.received", data=received_data(lead), at=lead.created_at)
        await _claim(session, source, webhook_id, lead.lead_id)
        return IntakeAccepted(lead_id=lead.lead_id, status=RECEIVED, duplicate=False)
    existing = await _by_external_id(session, source, body.external_id)
    if existing is None:  # pragma: no cover - the conflicting row is committed or we would not conflict
        raise RuntimeError("lead conflict without a lead")
    await _update_duplicate(session, existing, body, settings)
    await _remember(session, source, webhook_id, existing.lead_id)
    return IntakeAccepted(lead_id=existing.lead_id, status=existing.status, duplicate=True)  # type: ignore[arg-type]


async def _update_duplicate(session: AsyncSession, lead: Lead, body: LeadIn, settings: Settings) -> None:
    """A repeat of a lead still in nurture brings fresh data: re-qualify it with a new `lead.received`.

    The lead goes back to `received`, i.e. waiting, so that the reconciler routes it too if the event is
    lost; a score still below the bar sends it back to nurture."""
    if lead.status != NURTURING or body.score == lead.score:
        return
    _apply(lead, body)
    lead.status, lead.updated_at = RECEIVED, utcnow()
    timeline.record(session, settings, lead, "lead.received", data={**received_data(lead), "update": True})


class WebhookTaken(Exception):
    """Another transaction (another API process) stored this `webhook-id` with its own lead first: this
    transaction must not commit a second lead; retried, it finds the receipt and answers a duplicate."""


async def _claim(session: AsyncSession, source: str, webhook_id: str | None, lead_id: str) -> None:
    """Record the new lead's `webhook-id`, or fail if another delivery of it holds the receipt. On
    PostgreSQL the insert waits for a concurrent holder to commit or roll back, so exactly one of two
    deliveries in two processes (even with different bodies) keeps its lead."""
    if webhook_id and not await _insert_ignore(session, WebhookReceipt, {
            "source": source, "webhook_id": webhook_id, "lead_id": lead_id, "received_at": utcnow()}):
        raise WebhookTaken(f"webhook-id {webhook_id!r} of {source!r} was stored concurrently")


async def _remember(session: AsyncSession, source: str, webhook_id: str | None, lead_id: str) -> None:
    if webhook_id:  # a concurrent delivery of the same webhook may have recorded it already
        await _insert_ignore(session, WebhookReceipt, {"source": source, "webhook_id": webhook_id,
                                                       "lead_id": lead_id, "received_at": utcnow()})


async def _insert_new(session: AsyncSession, lead: Lead) -> bool:
    """False when the lead exists already, also when the same lead arrives concurrently: the later
    insert waits for the first to commit and then does nothing."""
    return await _insert_ignore(session, Lead, {c.key: getattr(lead, c.key) for c in Lead.__table__.columns})


async def _insert_ignore(session: AsyncSession, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT .. ON CONFLICT DO NOTHING (PostgreSQL and SQLite): one statement, no savepoint, no
    IntegrityError to recover from. True when the row was inserted."""
    result = await session.execute(_INSERT_IGNORE[(is_postgres(session), model)], values)
    return bool(cast(CursorResult[Any], result).rowcount)


# Built once: executing a prepared Core statement with parameters skips per-call SQL construction.
_INSERT_IGNORE: dict[tuple[bool, type[Base]], Any] = {
    (pg, model): (postgresql.insert if pg else sqlite.insert)(cast(Table, model.__table__)).on_conflict_do_nothing()
    for pg in (True, False) for model in (Lead, WebhookReceipt)}


async def _by_external_id(session: AsyncSession, source: str, external_id: str) -> Lead | None:
    return await session.scalar(select(Lead).where(Lead.source == source, Lead.external_id == external_id)
                                .with_for_update())


async def ingest_many(session: AsyncSession, items: list[tuple[str, LeadIn, str | None]], *,
                      settings: Settings) -> list[IntakeAccepted]:
    """`ingest` for a batch in one transaction: new leads go in with one multi-row INSERT .. ON CONFLICT
    DO NOTHING and their events with one INSERT per table; repeats take the single-lead path."""
    now = utcnow()
    leads = []
    for source, body, _ in items:
        lead = Lead(lead_id=str(uuid.uuid4()), source=source, external_id=body.external_id, status=RECEIVED,
                    created_at=now, updated_at=now)
        _apply(lead, body)
        leads.append(lead)
    seen = await _known_webhooks(session, [(src, wid) for src, _, wid in items if wid])
    fresh = []
    for lead, (src, _, wid) in zip(leads, items, strict=True):
        if wid and (src, wid) in seen:
            continue  # a redelivery (maybe of an earlier item in this batch): the single-lead path answers it
        if wid:
            seen.add((src, wid))
        fresh.append(lead)
    inserted: set[str] = set()
    if fresh:
        rows = [{c.key: getattr(lead, c.key) for c in Lead.__table__.columns} for lead in fresh]
        stmt = _INSERT_IGNORE[(is_postgres(session), Lead)].returning(Lead.lead_id)
        inserted = set((await session.scalars(stmt, rows)).all())
    results = []
    for lead, (source, body, webhook_id) in zip(leads, items, strict=True):
        if lead.lead_id in inserted:
            timeline.record(session, settings, lead, "lead.received", data=received_data(lead), at=now)
            await _claim(session, source, webhook_id, lead.lead_id)
            results.append(IntakeAccepted(lead_id=lead.lead_id, status=RECEIVED, duplicate=False))
        else:
            results.append(await ingest(session, source=source, body=body, webhook_id=webhook_id, settings=settings))
    return results


async def _known_webhooks(session: AsyncSession, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    if not keys:
        return set()
    rows = await session.execute(select(WebhookReceipt.source, WebhookReceipt.webhook_id).where(
        WebhookReceipt.webhook_id.in_([wid for _, wid in keys])))
    return {(src, wid) for src, wid in rows.all()} & set(keys)
