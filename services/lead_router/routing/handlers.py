"""What the router does with events on `<prefix>.leads` (no Kafka here), and the start-up reconciler."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.lead_router.routing import service
from shared.config import Settings
from shared.events import CloudEvent
from shared.kafka import BatchHandler, Handler

log = logging.getLogger(__name__)

ROUTE_ON = ("lead.received", "lead.rejected", "lead.recalled")


def router_handlers(settings: Settings) -> dict[str, Handler]:
    async def route(session: AsyncSession, event: CloudEvent) -> None:
        lead_id = event.subject or str(event.data.get("lead_id", ""))
        await service.route_lead(session, lead_id, settings=settings)

    return dict.fromkeys(ROUTE_ON, route)


def router_batch(settings: Settings) -> BatchHandler:
    """Route the leads of a whole batch of events together: the same decisions, a few statements."""

    async def route_all(session: AsyncSession, events: list[CloudEvent]) -> None:
        await service.route_leads(session, [e.subject or str(e.data.get("lead_id", "")) for e in events],
                                  settings=settings)

    return route_all


async def reconcile_once(sessions: async_sessionmaker[AsyncSession], settings: Settings, *,
                         grace_s: float) -> int:
    """Route every lead still waiting in `received` for longer than `grace_s`: after a broker restart
    (the bundled one keeps nothing) or a lost event, no lead stays stuck."""
    cutoff = service.grace_cutoff(grace_s)
    routed = 0
    while True:  # page by page: a routed lead leaves `received`, so each page is new
        async with sessions() as session:
            lead_ids = await service.waiting_leads(session, older_than=cutoff, limit=100)
        if not lead_ids:
            break
        async with sessions() as session, session.begin():
            decisions = await service.route_leads(session, lead_ids, settings=settings)
        if not decisions:  # another instance took them meanwhile; it will finish the rest
            break
        routed += len(decisions)
    if routed:
        log.info("reconciler: routed %d waiting lead(s)", routed)
    return routed


async def reconcile_forever(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    grace = 0.0  # at start-up everything waiting is left over from the previous run
    while True:
        try:
            await reconcile_once(sessions, settings, grace_s=grace)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconciler pass failed")
        grace = settings.reconcile_grace_s
        await asyncio.sleep(settings.reconcile_interval_s)
