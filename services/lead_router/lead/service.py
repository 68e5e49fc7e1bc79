"""The lead's life after routing: what admins read and the steps a partner takes.

Partner isolation: a partner sees and acts on a lead only while it is offered to or owned by it; for any
other lead the answer is the same 404 as for a lead that does not exist. The one exception is a partner
whose offer ended (it rejected the lead, or the lead was recalled from it): its late steps get 409, so a
late accept is told why it failed instead of being told the lead never existed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.lead_router.lead import timeline
from services.lead_router.lead.repository import LeadRepository
from services.lead_router.lead.schemas import (
    ActivityIn,
    ActivityRead,
    ContactRead,
    DispositionIn,
    LeadRead,
    RejectIn,
    StepResult,
    TimelineItem,
)
from services.lead_router.lead.states import ACCEPTED, FINAL, IN_HAND, OFFERED, RECEIVED, WORKING
from shared.config import Settings
from shared.errors import NotFound, TransitionNotAllowed, ValidationFailed
from shared.models import Lead, LeadOffer, Partner, utcnow

CLOCK_SKEW = timedelta(minutes=5)


def seconds_between(start: datetime, end: datetime) -> float:
    """Wall-clock seconds from `start` to `end`, never below 0 (a backdated activity counts as instant)."""
    return max(0.0, (end - start).total_seconds())


def to_read(lead: Lead, *, withhold_contact: bool = False) -> LeadRead:
    contact = ContactRead(**lead.contact)
    if withhold_contact:
        contact = ContactRead(title=contact.title)
    return LeadRead(lead_id=lead.lead_id, source=lead.source, external_id=lead.external_id, status=lead.status,
                    partner_id=lead.partner_id, score=lead.score, product=lead.product,
                    estimated_value=lead.estimated_value, campaign=lead.campaign, company=lead.company,
                    contact=contact, won_amount=lead.won_amount, created_at=lead.created_at,
                    updated_at=lead.updated_at, routed_at=lead.routed_at, accepted_at=lead.accepted_at,
                    closed_at=lead.closed_at)


def for_partner(lead: Lead) -> LeadRead:
    """Before acceptance the contact's name, email and phone are withheld."""
    return to_read(lead, withhold_contact=lead.status == OFFERED)


async def get_lead(session: AsyncSession, lead_id: str) -> Lead:
    lead = await LeadRepository(session).get(lead_id)
    if lead is None:
        raise NotFound(f"No lead {lead_id!r}.")
    return lead


async def get_timeline(session: AsyncSession, lead_id: str) -> list[TimelineItem]:
    await get_lead(session, lead_id)
    return [TimelineItem(event_id=e.event_id, type=e.type, at=e.at, partner_id=e.partner_id, data=e.data)
            for e in await LeadRepository(session).timeline(lead_id)]


async def partner_lead(session: AsyncSession, partner: Partner, lead_id: str, *, step: bool = False) -> Lead:
    """The partner's own lead, or 404. For a `step` (locked: it changes the lead) 409 when the partner's
    offer of it has ended; reading such a lead is 404 like any lead that is not the partner's."""
    repo = LeadRepository(session)
    lead = await repo.get(lead_id, lock=step)
    if lead is not None and lead.partner_id == partner.partner_id:
        return lead
    if lead is not None and step:
        offer = await repo.latest_offer(lead_id, partner.partner_id)
        if offer is not None and offer.status in ("rejected", "recalled"):
            raise TransitionNotAllowed(f"This lead is no longer yours: it was {offer.status}.")
    raise NotFound(f"No lead {lead_id!r}.")


async def _open_offer(session: AsyncSession, lead: Lead) -> LeadOffer | None:
    return await LeadRepository(session).latest_offer(lead.lead_id, lead.partner_id or "")


async def accept(session: AsyncSession, partner: Partner, lead_id: str, *, settings: Settings) -> StepResult:
    lead = await partner_lead(session, partner, lead_id, step=True)
    if lead.status == ACCEPTED:
        return StepResult(lead_id=lead.lead_id, status=ACCEPTED)
    if lead.status != OFFERED:
        raise TransitionNotAllowed(f"The lead is {lead.status}; only an offered lead can be accepted.")
    now = utcnow()
    offer = await _open_offer(session, lead)
    if offer is not None:
        offer.status, offer.responded_at = "accepted", now
        offer.accept_s = seconds_between(offer.offered_at, now)
    lead.status, lead.accepted_at, lead.updated_at = ACCEPTED, now, now
    timeline.record(session, settings, lead, "lead.accepted", data={"accepted_at": now.isoformat()}, at=now)
    return StepResult(lead_id=lead.lead_id, status=ACCEPTED)


async def reject(session: AsyncSession, partner: Partner, lead_id: str, body: RejectIn, *,
                 settings: Settings) -> StepResult:
    """The lead goes back to `received` and is routed on to the next eligible partner."""
    lead = await partner_lead(session, partner, lead_id, step=True)
    if lead.status != OFFERED:
        raise TransitionNotAllowed(f"The lead is {lead.status}; only an offered lead can be rejected.")
    now = utcnow()
    offer = await _open_offer(session, lead)
    if offer is not None:
        offer.status, offer.responded_at, offer.reason = "rejected", now, body.reason
    lead.status, lead.partner_id, lead.updated_at = RECEIVED, None, now
    timeline.record(session, settings, lead, "lead.rejected", partner_id=partner.partner_id,
                    data={"reason": body.reason, "note": body.note}, at=now)
    return StepResult(lead_id=lead.lead_id, status="rejected")


def _when(occurred_at: datetime | None, lead: Lead, now: datetime) -> datetime:
    at = occurred_at or now
    if at > now + CLOCK_SKEW:
        raise ValidationFailed("occurred_at is in the future.", errors=[
            {"field": "occurred_at", "message": "must not be in the future", "type": "value_error"}])
    if at < lead.created_at - CLOCK_SKEW:
        raise ValidationFailed("occurred_at is before the lead was received.", errors=[
            {"field": "occurred_at", "message": "must not be before the lead was received",
             "type": "value_error"}])
    return at


def _require_in_hand(lead: Lead) -> None:
    if lead.status == OFFERED:
        raise TransitionNotAllowed("Accept the lead first.")
    if lead.status not in IN_HAND:
        raise TransitionNotAllowed(f"The lead is {lead.status}; nothing more can be reported.")


async def add_activity(session: AsyncSession, partner: Partner, lead_id: str, body: ActivityIn, *,
                       settings: Settings) -> ActivityRead:
    lead = await partner_lead(session, partner, lead_id, step=True)
    _require_in_hand(lead)
    now = utcnow()
    at = _when(body.occurred_at, lead, now)
    offer = await _open_offer(session, lead)
    first = offer is not None and offer.first_touch_at is None
    if offer is not None and (offer.first_touch_at is None or at < offer.first_touch_at):
        # the first touch is the earliest activity, also when one is reported after a later one
        offer.first_touch_at, offer.first_touch_s = at, seconds_between(offer.offered_at, at)
    lead.updated_at = now
    event_id = timeline.record(session, settings, lead, "lead.activity", at=now, data={
        "type": body.type, "channel": body.channel, "occurred_at": at.isoformat(), "note": body.note,
        "first_touch": first})
    return ActivityRead(lead_id=lead.lead_id, event_id=event_id, type=body.type, channel=body.channel,
                        occurred_at=at, note=body.note)


async def set_disposition(session: AsyncSession, partner: Partner, lead_id: str, body: DispositionIn, *,
                          settings: Settings) -> StepResult:
    """`working` keeps the lead open; `won`, `lost` and `no_decision` close it for good."""
    lead = await partner_lead(session, partner, lead_id, step=True)
    _require_in_hand(lead)
    if body.amount is not None and body.status != "won":
        raise ValidationFailed("amount is reported with a won lead only.", errors=[
            {"field": "amount", "message": "only with status won", "type": "value_error"}])
    now = utcnow()
    lead.status, lead.updated_at = (WORKING if body.status == "working" else body.status), now
    final = lead.status in FINAL
    if final:
        lead.closed_at = now
    if body.status == "won":
        lead.won_amount = body.amount
    offer = await _open_offer(session, lead)
    if final and offer is not None:
        offer.outcome, offer.amount, offer.closed_at = lead.status, lead.won_amount, now
    timeline.record(session, settings, lead, "lead.disposition", at=now, data={
        "disposition": body.status, "amount": body.amount, "reason": body.reason, "note": body.note,
        "final": final})
    return StepResult(lead_id=lead.lead_id, status=lead.status)
