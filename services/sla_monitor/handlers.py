"""What the monitor does with events on `<prefix>.leads` and `<prefix>.partners` (no Kafka here).

Plain `async def handle_x(session, event, *, settings)` functions; `monitor_handlers(settings)` binds the
settings for `ConsumerLoop`. The loop runs a fetch's events in one transaction, in partition order, and skips
event ids it has seen.
Times are the events' own `time`: a clock starts when the lead was offered, not when we heard of it.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.sla_monitor import tracker
from services.sla_monitor.policy.service import DEFAULT
from services.sla_monitor.repository import VIEW_KEY, SlaRepository, batch_view
from services.sla_monitor.tracker import ACCEPT, FIRST_TOUCH, REPORT_BACK
from shared.config import Settings
from shared.events import CloudEvent
from shared.kafka import BatchHandler, Handler
from shared.models import SlaPartner, utcnow

log = logging.getLogger(__name__)


def _lead_id(event: CloudEvent) -> str:
    return str(event.data.get("lead_id") or event.subject or "")


def _partner_id(event: CloudEvent) -> str | None:
    value = event.data.get("partner_id")
    return str(value) if value else None


async def _clocks(session: AsyncSession, event: CloudEvent, *kinds: str) -> list[Any]:
    return await SlaRepository(session).open_clocks(_lead_id(event), kinds)


async def handle_lead_routed(session: AsyncSession, event: CloudEvent, *, settings: Settings) -> None:
    """The lead was offered to a partner: its accept clock starts, timed on the partner's calendar as the
    event carries it (the projection may not have heard of a new partner yet: `partner.upserted` comes on
    another topic, in no order with this)."""
    lead_id = _lead_id(event)
    calendar = event.data.get("partner_calendar")
    if isinstance(calendar, dict) and _partner_id(event):
        await _project_calendar(session, str(_partner_id(event)), calendar, event)
    for clock in await _clocks(session, event, ACCEPT):  # an earlier offer we never saw end
        await tracker.close(session, settings, clock, event.time, "superseded")
    await tracker.open_clock(session, lead_id=lead_id, partner_id=_partner_id(event), kind=ACCEPT, at=event.time,
                             event_id=event.id)


async def handle_lead_accepted(session: AsyncSession, event: CloudEvent, *, settings: Settings) -> None:
    """Accepted: the accept clock is met; first touch and report back start."""
    for clock in await _clocks(session, event, ACCEPT):
        await tracker.meet(session, settings, clock, event.time)
    lead_id, partner_id = _lead_id(event), _partner_id(event)
    for clock in await _clocks(session, event, FIRST_TOUCH, REPORT_BACK):  # redelivered accept of a new id
        await tracker.close(session, settings, clock, event.time, "superseded")
    for kind in (FIRST_TOUCH, REPORT_BACK):
        await tracker.open_clock(session, lead_id=lead_id, partner_id=partner_id, kind=kind, at=event.time,
                                 event_id=event.id)


async def handle_lead_rejected(session: AsyncSession, event: CloudEvent, *, settings: Settings) -> None:
    """Rejecting is an answer too: the accept clock is met."""
    for clock in await _clocks(session, event, ACCEPT):
        await tracker.meet(session, settings, clock, event.time)


async def handle_lead_recalled(session: AsyncSession, event: CloudEvent, *, settings: Settings) -> None:
    """The lead was taken back from the late partner: its accept clock ends, breached and recalled."""
    for clock in await _clocks(session, event, ACCEPT):
        await tracker.close(session, settings, clock, event.time, "recalled")


async def handle_lead_activity(session: AsyncSession, event: CloudEvent, *, settings: Settings) -> None:
    """News from the partner: first touch is met (the first time); report back is met and starts again."""
    await _news(session, event, settings=settings, final=False, touches=True)


async def handle_lead_disposition(session: AsyncSession, event: CloudEvent, *, settings: Settings) -> None:
    """A disposition restarts report back; a final one (won, lost, no decision) ends every clock, and
    counts as the first touch if none was logged."""
    await _news(session, event, settings=settings, final=bool(event.data.get("final")),
                touches=bool(event.data.get("final")))


async def _news(session: AsyncSession, event: CloudEvent, *, settings: Settings, final: bool, touches: bool) -> None:
    at = event.time  # when it was reported: a backdated `occurred_at` does not rewrite a deadline
    if touches:
        for clock in await _clocks(session, event, FIRST_TOUCH):
            await tracker.meet(session, settings, clock, at)
    reported = await _clocks(session, event, REPORT_BACK)
    for clock in reported:
        await tracker.meet(session, settings, clock, at)
    if final:
        for clock in await _clocks(session, event, ACCEPT, FIRST_TOUCH):
            await tracker.close(session, settings, clock, at, "closed")
    elif reported:  # restart only a clock that was running (never for a lead we saw no accept of)
        await tracker.open_clock(session, lead_id=_lead_id(event), partner_id=reported[-1].partner_id,
                                 kind=REPORT_BACK, at=at, event_id=event.id)


async def handle_partner_upserted(session: AsyncSession, event: CloudEvent, *, settings: Settings) -> None:
    """Keep the partner's calendar (zone, business hours, holiday country); an older upsert is ignored."""
    partner_id = _upserted_partner(event)
    if partner_id:
        await _project_calendar(session, partner_id, event.data, event)


async def _project_calendar(session: AsyncSession, partner_id: str, calendar: dict[str, Any],
                            event: CloudEvent) -> None:
    """The projection takes the calendar of the newest event that carried one (`partner.upserted`, or a
    `lead.routed` made with the partner as it was then)."""
    row = await SlaRepository(session).partner(partner_id)
    if row is not None and row.source_time > event.time:
        return
    if row is None:
        row = SlaPartner(partner_id=partner_id)
        session.add(row)
        view = batch_view(session)
        if view is not None:
            view.add_partner(row)
    row.timezone = calendar.get("timezone")
    row.business_hours = dict(calendar.get("business_hours") or {})
    row.holiday_country = calendar.get("holiday_country")
    row.source_time, row.updated_at = event.time, utcnow()


HANDLERS = {
    "lead.routed": handle_lead_routed,
    "lead.accepted": handle_lead_accepted,
    "lead.rejected": handle_lead_rejected,
    "lead.recalled": handle_lead_recalled,
    "lead.activity": handle_lead_activity,
    "lead.disposition": handle_lead_disposition,
    "partner.upserted": handle_partner_upserted,
}


def monitor_handlers(settings: Settings) -> dict[str, Handler]:
    return {name: functools.partial(fn, settings=settings) for name, fn in HANDLERS.items()}


def monitor_batch(settings: Settings) -> BatchHandler:
    """A fetch's events, in order, through the same handlers, after one read of everything they look up
    (`SlaRepository.prefetch`): the result is the one of handling them one by one, in a few statements."""
    handlers = monitor_handlers(settings)

    async def handle_all(session: AsyncSession, events: list[CloudEvent]) -> None:
        if not events:
            return
        partners = {pid for e in events for pid in (_partner_id(e), _upserted_partner(e)) if pid}
        leads = {_lead_id(e) for e in events if e.name != "partner.upserted"} - {""}
        await SlaRepository(session).prefetch(leads, partners, {*partners, DEFAULT})
        try:
            for event in events:
                await handlers[event.name](session, event)
        finally:
            session.info.pop(VIEW_KEY, None)

    return handle_all


def _upserted_partner(event: CloudEvent) -> str | None:
    if event.name != "partner.upserted":
        return None
    return str(event.data.get("partner_id") or event.subject or "") or None
