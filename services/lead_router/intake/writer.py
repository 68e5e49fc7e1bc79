"""Group commit for intake: webhooks that arrive together are written in one transaction.

A webhook's answer (202) waits until its lead is committed, so durability is unchanged; what changes is
that one BEGIN/INSERT/COMMIT round serves every request queued meanwhile. The writer takes whatever is
waiting when it becomes free, with no timer, so a lone webhook is not delayed. If a batch fails, its
leads are written one at a time, so one bad lead cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.lead_router.intake.schemas import IntakeAccepted, LeadIn
from services.lead_router.intake.service import WebhookTaken, ingest, ingest_many
from shared.config import Settings

log = logging.getLogger(__name__)

Item = tuple[str, LeadIn, str | None, "asyncio.Future[IntakeAccepted]"]


class IngestWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings, *,
                 max_batch: int = 200) -> None:
        self.sessions = sessions
        self.settings = settings
        self.max_batch = max_batch
        self.queue: asyncio.Queue[Item] = asyncio.Queue()

    async def submit(self, source: str, body: LeadIn, webhook_id: str | None) -> IntakeAccepted:
        future: asyncio.Future[IntakeAccepted] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((source, body, webhook_id, future))
        # Shielded: a client that hangs up does not cancel the write, only its wait for the answer.
        return await asyncio.shield(future)

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[Item]) -> None:
        try:
            async with self.sessions() as session, session.begin():
                results = await ingest_many(session, [(s, b, w) for s, b, w, _ in batch], settings=self.settings)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("intake batch of %d failed; writing its leads one at a time", len(batch), exc_info=True)
            for item in batch:
                await self._write_one(item)
            return
        for (_, _, _, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _write_one(self, item: Item) -> None:
        source, body, webhook_id, future = item
        try:
            for attempt in range(3):
                try:
                    async with self.sessions() as session, session.begin():
                        result = await ingest(session, source=source, body=body, webhook_id=webhook_id,
                                              settings=self.settings)
                    break
                except WebhookTaken:  # another process stored it first: now its receipt answers
                    if attempt == 2:
                        raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the waiting request, which answers with a problem
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)
