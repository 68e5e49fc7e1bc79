"""The deadline scheduler: flags each breach within a second of its due time without scanning clocks.

The due times of armed clocks are kept in a heap (earliest first). At start it is filled from the
database (every open, armed clock, so deadlines that passed while the monitor was down are flagged at
once); afterwards every commit that opens or re-arms a clock pushes its due time (see `hub`), and wakes
the loop. The loop sleeps until the earliest due time or a push, pops what is due (up to `FLAG_BATCH`) and
flags those clocks in one transaction (`tracker.breach_many`), stamping them with the time that transaction
runs, so `breached_at` and the lateness histogram show how far behind the scheduler really is. Every
`sla_scheduler_max_sleep_s` it also reads the armed clocks due within the next such interval (an index
range on (armed, due_at)): a safety net for deadlines this process did not push itself, e.g. a clock
re-armed by another monitor instance.

Heap entries are hints, never trusted: the batch re-reads its clocks under row locks and skips those no
longer due, so stale entries cost nothing but a place in the IN list. A clock whose row another
transaction holds (another instance, the consumer) is skipped rather than waited for, and pushed back to be
tried again `BUSY_RETRY_S` later.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.sla_monitor import tracker
from services.sla_monitor.repository import SlaRepository
from shared.config import Settings
from shared.models import SlaAlert, utcnow

log = logging.getLogger(__name__)

FLAG_BATCH = 200  # clocks per flagging transaction
BUSY_RETRY_S = 0.05


async def flag_batch(sessions: async_sessionmaker[AsyncSession], settings: Settings, clock_ids: list[str],
                     now: datetime | None = None, *, on_flag: Callable[[SlaAlert], None] | None = None
                     ) -> tracker.Flagged:
    """Flag the clocks of `clock_ids` that are due, in one transaction. `breached_at` is `now`, or when
    none is given the time the transaction starts. `on_flag` sees each new alert after the commit."""
    if not clock_ids:
        return tracker.Flagged()
    async with sessions() as session, session.begin():
        flagged = await tracker.breach_many(session, settings, clock_ids, now or utcnow())
    if on_flag is not None:
        for alert in flagged.alerts:
            on_flag(alert)
    return flagged


async def flag_clocks(sessions: async_sessionmaker[AsyncSession], settings: Settings, clock_ids: list[str],
                      now: datetime | None = None, *, on_flag: Callable[[SlaAlert], None] | None = None
                      ) -> list[SlaAlert]:
    """Flag each clock of `clock_ids` that is due, `FLAG_BATCH` per transaction; returns the new alerts."""
    ids = list(dict.fromkeys(clock_ids))
    alerts: list[SlaAlert] = []
    for i in range(0, len(ids), FLAG_BATCH):
        alerts += (await flag_batch(sessions, settings, ids[i:i + FLAG_BATCH], now, on_flag=on_flag)).alerts
    return alerts


async def flag_due(sessions: async_sessionmaker[AsyncSession], settings: Settings, now: datetime | None = None
                   ) -> list[SlaAlert]:
    """Flag every clock due at `now` found in the database (an index range on (armed, due_at)). Calling
    it again for the same `now` flags nothing new. Clocks another transaction holds are waited for."""
    flagged: list[SlaAlert] = []
    while True:
        async with sessions() as session:
            ids = await SlaRepository(session).due(now or utcnow(), FLAG_BATCH)
        result = await flag_batch(sessions, settings, ids, now)
        flagged += result.alerts
        if result.busy:
            await asyncio.sleep(BUSY_RETRY_S)
            continue
        if len(ids) < FLAG_BATCH or not result.alerts:
            return flagged


class DeadlineScheduler:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings, *,
                 on_flag: Callable[[SlaAlert], None] | None = None) -> None:
        self.sessions = sessions
        self.settings = settings
        self.on_flag = on_flag
        self.heap: list[tuple[datetime, str]] = []
        self.wake = asyncio.Event()
        self.loaded = False
        self.flagged = 0
        self.next_resync = time.monotonic() + settings.sla_scheduler_max_sleep_s

    def push(self, due_at: datetime, clock_id: str) -> None:
        heapq.heappush(self.heap, (due_at, clock_id))
        if self.heap[0][1] == clock_id:  # a new earliest deadline: the sleeper must recompute
            self.wake.set()

    async def load(self) -> None:
        """Fill the heap with every armed clock (the database is the truth; the heap only orders it)."""
        async with self.sessions() as session:
            armed = await SlaRepository(session).armed()
        for entry in armed:
            heapq.heappush(self.heap, entry)
        self.loaded = True
        self.wake.set()
        log.info("scheduler: watching %d open clock(s)", len(armed))

    def _pop_due(self, now: datetime) -> list[str]:
        ids: list[str] = []
        while self.heap and self.heap[0][0] <= now and len(ids) < FLAG_BATCH:
            ids.append(heapq.heappop(self.heap)[1])
        return ids

    async def run(self) -> None:
        backoff = 0.25
        while not self.loaded:
            try:
                await self.load()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database not there yet
                log.warning("scheduler: loading clocks failed (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
        while True:
            now = utcnow()
            ids = self._pop_due(now)
            if ids:
                try:
                    result = await flag_batch(self.sessions, self.settings, ids, on_flag=self.on_flag)
                    self.flagged += len(result.alerts)
                    retry_at = utcnow() + timedelta(seconds=BUSY_RETRY_S)
                    for clock_id in result.busy:
                        heapq.heappush(self.heap, (retry_at, clock_id))
                    backoff = 0.25
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # keep the deadlines; the database decides what is still due
                    log.warning("scheduler: flagging failed (%s); retrying in %.1fs", exc, backoff)
                    for clock_id in ids:
                        heapq.heappush(self.heap, (now, clock_id))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10)
                continue
            self.wake.clear()
            max_sleep = self.settings.sla_scheduler_max_sleep_s
            if time.monotonic() >= self.next_resync:
                try:
                    await self.resync(utcnow() + timedelta(seconds=max_sleep))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - only the safety net; try again next round
                    log.warning("scheduler: resync failed (%s)", exc)
                self.next_resync = time.monotonic() + max_sleep
                continue
            wait = max(0.0, min(max_sleep, self.next_resync - time.monotonic()))
            if self.heap:
                wait = min(wait, max(0.0, (self.heap[0][0] - utcnow()).total_seconds()))
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def resync(self, until: datetime) -> None:
        """Add the armed clocks due by `until` to the heap (duplicates are harmless: entries are hints)."""
        async with self.sessions() as session:
            for entry in await SlaRepository(session).armed(until):
                heapq.heappush(self.heap, entry)
