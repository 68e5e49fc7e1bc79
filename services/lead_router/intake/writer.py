"""Group commit for intake: webhooks that arrive together are written in one transaction.

A webhook's answer (202) waits until its leads are committed, so durability is unchanged; what changes is
that one BEGIN/INSERT/COMMIT round serves every request queued meanwhile. The writer takes whatever is
waiting when it becomes free, with no timer, so a lone webhook is not delayed. If a batch fails, its
requests are written one at a time, each in its own transaction (a request's leads all or none), so one
bad request cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.lead_router.intake.direct import DirectIntake
from services.lead_router.intake.schemas import IntakeAccepted, IntakeItem, LeadIn
from services.lead_router.intake.service import Entry, Patch, WebhookTaken, apply_patch, ingest, ingest_many
from services.lead_router.lead.states import RECEIVED
from shared.config import Settings
from shared.models import utcnow
from shared.observability import stage
from shared.wakeup import OUTBOX_COMMITTED

log = logging.getLogger(__name__)
COMMIT_STAGE = stage("commit")


@dataclass
class Unit:
    """One request's leads (and changes to known leads), with the webhook-id of each."""

    source: str
    entries: list[Entry]
    webhook_ids: list[str | None]
    future: asyncio.Future[list[IntakeItem]]
    submitted: float = 0.0


class Followup(Protocol):
    """What runs right after intake's commit on the leads it left waiting (routing on intake)."""

    def room(self) -> int:
        """How many ids `submit` takes now."""

    def submit(self, lead_ids: Sequence[str], *, wake_relay: bool = False) -> None:
        """Handle these committed leads soon; `wake_relay`: in a transaction that wakes the outbox relay when
        it commits (their commit did not)."""


class IngestWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings, *,
                 max_batch: int = 200, followup: Followup | None = None, direct: DirectIntake | None = None) -> None:
        self.sessions = sessions
        self.settings = settings
        self.max_batch = max_batch
        self.followup = followup  # told the ids of the leads left waiting (`received`) by each commit
        self.direct = direct  # PostgreSQL: requests of one new lead each, with one statement (see intake.direct)
        self.queue: asyncio.Queue[Unit] = asyncio.Queue()

    async def submit(self, source: str, entries: list[Entry], webhook_ids: list[str | None]) -> list[IntakeItem]:
        future: asyncio.Future[list[IntakeItem]] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(Unit(source, entries, webhook_ids, future, time.monotonic()))
        # Shielded: a client that hangs up does not cancel the write, only its wait for the answer.
        return await asyncio.shield(future)

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0].entries)
            while size < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
                size += len(batch[-1].entries)
            await self._write(batch)

    async def _write(self, batch: list[Unit]) -> None:
        if self.direct is not None:
            batch = await self._write_direct(batch)
            if not batch:
                return
        try:
            async with self.sessions() as session, session.begin():
                results = await self._store(session, batch)
                waiting = _waiting([item for result in results for item in result])
                deferred = self._defer_wake(session, waiting)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("intake batch of %d request(s) failed; writing them one at a time", len(batch),
                        exc_info=True)
            for unit in batch:
                await self._write_one(unit)
            return
        now = time.monotonic()
        for unit, result in zip(batch, results, strict=True):
            COMMIT_STAGE.observe(now - unit.submitted)
            if not unit.future.done():
                unit.future.set_result(result)
        self._tell(waiting, wake_relay=deferred)

    async def _write_direct(self, batch: list[Unit]) -> list[Unit]:
        """Store the requests of one new lead each with one statement; returns the requests left to the
        session's transaction (see `intake.direct`: duplicates, patches, requests of several entries)."""
        assert self.direct is not None
        single, webhook_ids = [], set()
        for unit in batch:
            entry, webhook_id = unit.entries[0], unit.webhook_ids[0]
            if len(unit.entries) == 1 and isinstance(entry, LeadIn) and (unit.source, webhook_id) not in webhook_ids:
                single.append(unit)
                if webhook_id:
                    webhook_ids.add((unit.source, webhook_id))
            elif any(isinstance(e, LeadIn) for e in unit.entries):
                break  # its leads come first, as they arrived: a later delivery of one of them is merged into it
        if not single:
            return batch
        # As `_defer_wake`: when the follow-up takes every lead stored here, its commit wakes the relay.
        deferred = self.followup is not None and len(single) <= self.followup.room()
        try:
            stored = await self.direct.store([(u.source, cast(LeadIn, u.entries[0]), u.webhook_ids[0]) for u in single],
                                             now=utcnow(), wake_relay=not deferred)
        except asyncio.CancelledError:
            raise
        except Exception:  # the session's transaction stores them, or answers why not
            log.info("storing %d new lead(s) with one statement failed; storing them in a transaction", len(single),
                     exc_info=True)
            return batch
        now = time.monotonic()
        waiting, done = [], set()
        for unit, lead_id in zip(single, stored.lead_ids, strict=True):
            if lead_id in stored.inserted:
                COMMIT_STAGE.observe(now - unit.submitted)
                waiting.append(lead_id)
                done.add(id(unit))
                if not unit.future.done():
                    unit.future.set_result([_item(cast(LeadIn, unit.entries[0]),
                                                  IntakeAccepted(lead_id=lead_id, status=RECEIVED, duplicate=False))])
        self._tell(waiting, wake_relay=deferred)
        return [unit for unit in batch if id(unit) not in done]

    def _defer_wake(self, session: AsyncSession, waiting: list[str]) -> bool:
        """When the follow-up takes every lead this commit leaves waiting, its transaction (a moment later)
        wakes the outbox relay for this commit's events too: one relay round publishes a lead's
        `lead.received` and `lead.routed`, not one round each. Were that transaction lost, the relay's poll
        (`LEADROUTER_RELAY_POLL_INTERVAL_S`) still publishes them."""
        if self.followup is not None and 0 < len(waiting) <= self.followup.room():
            OUTBOX_COMMITTED.unmark(session)
            return True
        return False

    def _tell(self, waiting: list[str], *, wake_relay: bool = False) -> None:
        """Hand the leads a commit left waiting (`received`) to the follow-up."""
        if waiting and self.followup is not None:
            self.followup.submit(waiting, wake_relay=wake_relay)

    async def _store(self, session: AsyncSession, batch: list[Unit]) -> list[list[IntakeItem]]:
        """New leads of every request with one multi-row insert; then changes to known leads, in order."""
        leads = [(u.source, e, w) for u in batch for e, w in zip(u.entries, u.webhook_ids, strict=True)
                 if isinstance(e, LeadIn)]
        stored = iter(await ingest_many(session, leads, settings=self.settings) if leads else [])
        results = []
        for unit in batch:
            items = []
            for entry in unit.entries:
                if isinstance(entry, LeadIn):
                    items.append(_item(entry, next(stored)))
                else:
                    items.append(await self._patch(session, unit.source, entry))
            results.append(items)
        return results

    async def _patch(self, session: AsyncSession, source: str, patch: Patch) -> IntakeItem:
        lead = await apply_patch(session, source=source, patch=patch, settings=self.settings)
        if lead is None:
            return IntakeItem(external_id=patch.external_id, lead_id=None, status="ignored", duplicate=False)
        return IntakeItem(external_id=patch.external_id, lead_id=lead.lead_id, status=lead.status,  # type: ignore[arg-type]
                          duplicate=True)

    async def _write_one(self, unit: Unit) -> None:
        try:
            for attempt in range(3):
                try:
                    async with self.sessions() as session, session.begin():
                        result = [await self._one(session, unit.source, e, w)
                                  for e, w in zip(unit.entries, unit.webhook_ids, strict=True)]
                    break
                except WebhookTaken:  # another process stored it first: now its receipt answers
                    if attempt == 2:
                        raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the waiting request, which answers with a problem
            if not unit.future.done():
                unit.future.set_exception(exc)
            return
        if not unit.future.done():
            unit.future.set_result(result)
        self._tell(_waiting(result))

    async def _one(self, session: AsyncSession, source: str, entry: Entry, webhook_id: str | None) -> IntakeItem:
        if isinstance(entry, Patch):
            return await self._patch(session, source, entry)
        return _item(entry, await ingest(session, source=source, body=entry, webhook_id=webhook_id,
                                         settings=self.settings))


def _waiting(items: list[IntakeItem]) -> list[str]:
    return [i.lead_id for i in items if i.status == RECEIVED and i.lead_id is not None]


def _item(entry: LeadIn, accepted: IntakeAccepted) -> IntakeItem:
    return IntakeItem(external_id=entry.external_id, lead_id=accepted.lead_id, status=accepted.status,
                      duplicate=accepted.duplicate)
