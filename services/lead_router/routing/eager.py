"""Routing right after intake, in the process that stored the leads: the webhook's leads are offered
without waiting for their `lead.received` event to travel through the relay and the broker to a router.

Intake hands over the ids of leads it has just committed (status `received`); this task routes them in a
transaction of its own, after the webhook has been answered, so routing stays asynchronous and the 202
never waits for it. It is only a head start: the `lead.received` event is published as before, and the
router that consumes it routes whatever is still waiting (a lead this process had no time for, a crash
between the two commits, a routing transaction that failed); a lead already offered is skipped there
without taking the routing lock. Leads arriving faster than they can be routed here are left to that
path too (at most `max_pending` ids wait in memory).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.lead_router.routing.service import route_leads
from shared.config import Settings
from shared.wakeup import OUTBOX_COMMITTED

log = logging.getLogger(__name__)


class IntakeRouter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings, *,
                 max_batch: int = 200, max_pending: int = 5_000) -> None:
        self.sessions = sessions
        self.settings = settings
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.pending: list[str] = []
        self.wake = asyncio.Event()
        self.routed = 0
        self.left = 0  # ids handed to the event path because too many were waiting
        self.owe_wake = False  # an intake commit left the outbox relay's wake-up to our next commit

    def room(self) -> int:
        return max(self.max_pending - len(self.pending), 0)

    def submit(self, lead_ids: Sequence[str], *, wake_relay: bool = False) -> None:
        """Route these committed leads soon (never blocks; beyond `max_pending` the event path routes them).
        `wake_relay`: their commit left the relay's wake-up to the next routing commit (see IngestWriter)."""
        self.owe_wake = self.owe_wake or wake_relay
        room = self.max_pending - len(self.pending)
        if room < len(lead_ids):
            self.left += len(lead_ids) - max(room, 0)
        if room > 0:
            self.pending.extend(lead_ids[:room])
            self.wake.set()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                batch, self.pending = self.pending[:self.max_batch], self.pending[self.max_batch:]
                await self._route(batch)

    async def _route(self, lead_ids: list[str]) -> None:
        # One wake-up after those intake commits publishes all their events: the relay takes every unsent row.
        owed, self.owe_wake = self.owe_wake, False
        try:
            async with self.sessions() as session, session.begin():
                decisions = await route_leads(session, lead_ids, settings=self.settings, look_first=False)
                if owed:  # a decision's events mark the session too; with none, this commit still wakes it
                    OUTBOX_COMMITTED.mark(session)
        except asyncio.CancelledError:
            raise
        except Exception:  # the lead.received events route them
            log.warning("routing %d lead(s) after intake failed; their lead.received events will route them",
                        len(lead_ids), exc_info=True)
            if owed:
                await self._wake_relay()
            return
        self.routed += len(decisions)

    async def _wake_relay(self) -> None:
        """Wake the relay for intake's events with an empty transaction (else its poll publishes them)."""
        try:
            async with self.sessions() as session, session.begin():
                OUTBOX_COMMITTED.mark(session)
        except Exception:  # noqa: BLE001 - the database is away: the relay's poll finds them later
            log.warning("waking the outbox relay failed; its poll publishes the events", exc_info=True)
