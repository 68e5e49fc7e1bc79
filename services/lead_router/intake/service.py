"""Intake: store a lead durably with its `lead.received` event, once per (source, external_id), webhook-id and
open person (normalized email): a later delivery of a known lead is merged into it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Table, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.lead_router.intake.schemas import IntakeAccepted, LeadIn
from services.lead_router.lead import timeline
from services.lead_router.lead.states import FINAL, NURTURING, RECEIVED, UNROUTABLE
from shared.config import Settings
from shared.db import is_postgres
from shared.models import Base, Lead, WebhookReceipt, utcnow
from shared.models.lead import OPEN_PREDICATE

CONTACT_FIELDS = ("email", "first_name", "last_name", "phone", "title")


def received_data(lead: Lead) -> dict[str, Any]:
    return {"external_id": lead.external_id, "score": lead.score, "product": lead.product,
            "estimated_value": lead.estimated_value, "campaign": lead.campaign, "company": lead.company}


def normalize_email(email: str) -> str:
    """The person behind a lead: case and surrounding spaces do not matter; dots and plus tags do (they may
    be different mailboxes)."""
    return email.strip().lower()


def new_lead(source: str, body: LeadIn, now: datetime | None = None) -> Lead:
    """A lead for `body`, as intake inserts it (not added to a session)."""
    now = now or utcnow()
    lead = Lead(lead_id=str(uuid.uuid4()), source=source, external_id=body.external_id, status=RECEIVED,
                created_at=now, updated_at=now)
    _apply(lead, body)
    return lead


def lead_row(lead: Lead) -> dict[str, Any]:
    """Every column of `lead`, for an INSERT of plain values."""
    return {c.key: getattr(lead, c.key) for c in Lead.__table__.columns}


def _apply(lead: Lead, body: LeadIn) -> None:
    lead.score = body.score
    lead.product = body.product
    lead.estimated_value = body.estimated_value
    lead.campaign = body.campaign
    lead.company = body.company.model_dump(mode="json")
    lead.contact = body.model_dump(mode="json", include=set(CONTACT_FIELDS))
    lead.occurred_at = body.occurred_at
    lead.email_norm = normalize_email(body.email)


@dataclass(frozen=True)
class Patch:
    """Some fields of a lead already known by its `(source, external_id)`, e.g. a HubSpot property change.
    `fields` uses the generic body's dotted names (`score`, `company.country`), already validated."""

    external_id: str
    fields: dict[str, Any]
    occurred_at: datetime | None = None


Entry = LeadIn | Patch


async def ingest(session: AsyncSession, *, source: str, body: LeadIn, webhook_id: str | None,
                 settings: Settings) -> IntakeAccepted:
    """Store a new lead, or, when it is known already (the same `(source, external_id)`, or an open lead of
    the same person from any source), merge it into that lead and answer a duplicate."""
    if webhook_id:
        receipt = await session.get(WebhookReceipt, (source, webhook_id))
        if receipt is not None:
            lead = await session.get(Lead, receipt.lead_id)
            return IntakeAccepted(lead_id=receipt.lead_id, status=lead.status if lead else RECEIVED,
                                  duplicate=True)
    for _ in range(3):
        lead = new_lead(source, body)
        if await _insert_new(session, lead):
            timeline.record(session, settings, lead, "lead.received", data=received_data(lead), at=lead.created_at)
            await _claim(session, source, webhook_id, lead.lead_id)
            return IntakeAccepted(lead_id=lead.lead_id, status=RECEIVED, duplicate=False)
        existing = (await _by_external_id(session, source, body.external_id)
                    or await _open_by_email(session, normalize_email(body.email)))
        if existing is None:  # the lead it collided with closed or rolled back meanwhile: insert again
            continue
        await merge(session, existing, _incoming(body), settings=settings, source=source,
                    external_id=body.external_id, occurred_at=body.occurred_at)
        await _remember(session, source, webhook_id, existing.lead_id)
        return IntakeAccepted(lead_id=existing.lead_id, status=existing.status,  # type: ignore[arg-type]
                              duplicate=True)
    raise RuntimeError(f"lead {source}/{body.external_id} kept colliding with leads that went away")


async def apply_patch(session: AsyncSession, *, source: str, patch: Patch, settings: Settings) -> Lead | None:
    """A change to a known lead (by `(source, external_id)`); None when no such lead exists."""
    lead = await _by_external_id(session, source, patch.external_id)
    if lead is not None:
        await merge(session, lead, patch.fields, settings=settings, source=source, external_id=patch.external_id,
                    occurred_at=patch.occurred_at)
    return lead


MERGED_FIELDS = ("email", "first_name", "last_name", "phone", "title", "company.name", "company.domain",
                 "company.industry", "company.employees", "company.country", "company.region",
                 "company.postal_code", "product", "estimated_value", "campaign", "score")


def _incoming(body: LeadIn) -> dict[str, Any]:
    company = body.company.model_dump(mode="json")
    values = {**body.model_dump(mode="json", include={*CONTACT_FIELDS, "product", "estimated_value",
                                                      "campaign", "score"}),
              **{f"company.{k}": v for k, v in company.items()}}
    return {k: v for k, v in values.items() if v not in (None, "")}


def _current(lead: Lead, name: str) -> Any:
    if name.startswith("company."):
        return (lead.company or {}).get(name[8:])
    if name in CONTACT_FIELDS:
        return (lead.contact or {}).get(name)
    return getattr(lead, name)


def _set(lead: Lead, name: str, value: Any) -> None:
    if name.startswith("company."):
        lead.company = {**(lead.company or {}), name[8:]: value}  # a new dict: JSON columns track assignment
    elif name in CONTACT_FIELDS:
        lead.contact = {**(lead.contact or {}), name: value}
    else:
        setattr(lead, name, value)


async def merge(session: AsyncSession, lead: Lead, incoming: dict[str, Any], *, settings: Settings, source: str,
                external_id: str, occurred_at: datetime | None) -> dict[str, Any]:
    """Merge a later delivery into an open lead: its non-empty values win (an older one, by `occurred_at`,
    only fills what is empty), its score replaces the lead's. What changed goes to the timeline and out as
    `lead.updated`; a lead waiting in nurture (or left unroutable) is decided again on the new facts. A
    closed lead is history: nothing changes. Returns the changes (`{field: {"from", "to"}}`)."""
    if lead.status in FINAL:
        return {}
    older = occurred_at is not None and lead.occurred_at is not None and occurred_at < lead.occurred_at
    changes: dict[str, Any] = {}
    for name in MERGED_FIELDS:
        if name not in incoming:
            continue
        value, current = incoming[name], _current(lead, name)
        if value == current or (older and current not in (None, "")):
            continue
        if name == "email" and normalize_email(value) == lead.email_norm:
            continue  # the same mailbox written differently ("Dana.Wu@…"): not a change
        if name == "email":
            other = await _open_by_email(session, normalize_email(value))
            if other is not None and other.lead_id != lead.lead_id:
                continue  # that person has an open lead of their own: both stay as they are
            lead.email_norm = normalize_email(value)
        _set(lead, name, value)
        changes[name] = {"from": current, "to": value}
    if not changes:
        return changes
    if occurred_at is not None and not older:
        lead.occurred_at = occurred_at
    lead.updated_at = utcnow()
    merged_from = {} if (source, external_id) == (lead.source, lead.external_id) else {
        "merged_from": {"source": source, "external_id": external_id}}
    timeline.record(session, settings, lead, "lead.updated", data={"changes": changes, **merged_from})
    if lead.status in (NURTURING, UNROUTABLE):  # new facts: the router decides this lead again
        lead.status = RECEIVED
        timeline.record(session, settings, lead, "lead.received", data={**received_data(lead), "update": True})
    return changes


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
    return await _insert_ignore(session, Lead, lead_row(lead))


async def _insert_ignore(session: AsyncSession, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT .. ON CONFLICT DO NOTHING (PostgreSQL and SQLite): one statement, no savepoint, no
    IntegrityError to recover from. True when the row was inserted."""
    result = await session.execute(_INSERT_IGNORE[(is_postgres(session), model)], values)
    return bool(cast(CursorResult[Any], result).rowcount)


# Built once: executing a prepared Core statement with parameters skips per-call SQL construction.
_INSERT_IGNORE: dict[tuple[bool, type[Base]], Any] = {
    (pg, model): (postgresql.insert if pg else sqlite.insert)(cast(Table, model.__table__)).on_conflict_do_nothing()
    for pg in (True, False) for model in (Lead, WebhookReceipt)}
_INSERT_NEW = {pg: _INSERT_IGNORE[(pg, Lead)].returning(Lead.lead_id) for pg in (True, False)}
_CLAIM_NEW = {pg: _INSERT_IGNORE[(pg, WebhookReceipt)].returning(WebhookReceipt.source, WebhookReceipt.webhook_id)
              for pg in (True, False)}


async def _by_external_id(session: AsyncSession, source: str, external_id: str) -> Lead | None:
    return await session.scalar(select(Lead).where(Lead.source == source, Lead.external_id == external_id)
                                .with_for_update())


async def _open_by_email(session: AsyncSession, email_norm: str) -> Lead | None:
    # The predicate verbatim as the partial unique index has it, so both databases read that index.
    return await session.scalar(select(Lead).where(Lead.email_norm == email_norm, text(OPEN_PREDICATE))
                                .with_for_update())


async def ingest_many(session: AsyncSession, items: list[tuple[str, LeadIn, str | None]], *,
                      settings: Settings) -> list[IntakeAccepted]:
    """`ingest` for a batch in one transaction: new leads go in with one multi-row INSERT .. ON CONFLICT
    DO NOTHING and their events with one INSERT per table; repeats take the single-lead path."""
    now = utcnow()
    leads = [new_lead(source, body, now) for source, body, _ in items]
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
        rows = [lead_row(lead) for lead in fresh]
        inserted = set((await session.scalars(_INSERT_NEW[is_postgres(session)], rows)).all())
    await _claim_many(session, [(src, wid, lead.lead_id) for lead, (src, _, wid) in zip(leads, items, strict=True)
                                if wid and lead.lead_id in inserted], now)
    results = []
    for lead, (source, body, webhook_id) in zip(leads, items, strict=True):
        if lead.lead_id in inserted:
            timeline.record(session, settings, lead, "lead.received", data=received_data(lead), at=now)
            results.append(IntakeAccepted(lead_id=lead.lead_id, status=RECEIVED, duplicate=False))
        else:
            results.append(await ingest(session, source=source, body=body, webhook_id=webhook_id, settings=settings))
    return results


async def _claim_many(session: AsyncSession, claims: list[tuple[str, str, str]], now: datetime) -> None:
    """`_claim` for the new leads of a batch, in one statement: (source, webhook-id, lead id) each."""
    if not claims:
        return
    rows = [{"source": src, "webhook_id": wid, "lead_id": lead_id, "received_at": now} for src, wid, lead_id in claims]
    stored = {(src, wid) for src, wid in (await session.execute(_CLAIM_NEW[is_postgres(session)], rows)).all()}
    taken = {(src, wid) for src, wid, _ in claims} - stored
    if taken:
        raise WebhookTaken(f"webhook-id(s) {sorted(taken)!r} were stored concurrently")


async def _known_webhooks(session: AsyncSession, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    if not keys:
        return set()
    rows = await session.execute(select(WebhookReceipt.source, WebhookReceipt.webhook_id).where(
        WebhookReceipt.webhook_id.in_([wid for _, wid in keys])))
    return {(src, wid) for src, wid in rows.all()} & set(keys)


def forgettable_receipts(before: datetime) -> list[ColumnElement[bool]]:
    """The `webhook-id`s received before `before` whose lead is closed: senders stop redelivering within days,
    and a later delivery of a closed lead is still answered as a duplicate by `(source, external_id)` and changes
    nothing. An open lead keeps its ids (a redelivery matched by `external_id` would be merged into it, and an
    old body's values could overwrite newer ones)."""
    return [WebhookReceipt.received_at < before,
            WebhookReceipt.lead_id.in_(select(Lead.lead_id).where(Lead.status.in_(FINAL)))]
