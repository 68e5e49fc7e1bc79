"""Transactional outbox: events are rows written with the change that caused them; a relay publishes.

`add_event` only adds a row to the caller's session, so the event commits or rolls back with the
state change. `OutboxRelay` reads unsent rows in id order, publishes them keyed by lead id (so a lead's
events keep their order within its partition), waits for the broker's acknowledgement and only then
marks them sent. While the broker is unreachable it retries with capped exponential backoff; a row is
never dropped. On PostgreSQL a transaction-scoped advisory lock lets one relay of many publish at a
time, which keeps per-lead order when several lead_router instances run.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db import is_postgres
from shared.events import CloudEvent, encode, new_event
from shared.kafka import make_producer
from shared.models import OutboxMessage, utcnow
from shared.tasks import TaskGroup, retry_forever

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 746_215_001
LOCK_BUSY = -1

_wake: asyncio.Event | None = None


def _wake_event() -> asyncio.Event:
    global _wake
    if _wake is None:
        _wake = asyncio.Event()
    return _wake


@sa_event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop("outbox_dirty", False) and _wake is not None:
        _wake.set()


def add_event(session: AsyncSession, *, topic: str, name: str, source: str, subject: str,
              data: dict[str, Any], at: datetime | None = None) -> CloudEvent:
    """Stage a CloudEvent for publication in the caller's transaction."""
    ev = new_event(name, source=source, subject=subject, data=data, at=at)
    session.add(OutboxMessage(event_id=ev.id, topic=topic, key=subject, type=ev.type, payload=encode(ev),
                              created_at=ev.time))
    session.sync_session.info["outbox_dirty"] = True
    return ev


async def backlog(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).where(OutboxMessage.sent_at.is_(None))) or 0)


class OutboxRelay:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], producer: Any, *, batch_size: int = 500,
                 poll_interval_s: float = 0.2, max_backoff_s: float = 5.0) -> None:
        self.sessions = sessions
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.published = 0

    async def run(self) -> None:
        wake = _wake_event()
        backoff = 0.05
        while True:
            try:
                sent = await self.publish_batch()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker down, database busy: keep the rows, try again later
                log.warning("outbox relay: publish failed (%s); retrying in %.2fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            if sent >= self.batch_size:
                continue
            if sent == LOCK_BUSY:  # another relay is publishing; our rows may be behind its batch
                await asyncio.sleep(0.005)
                continue
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), timeout=self.poll_interval_s)
            except TimeoutError:
                pass

    async def publish_batch(self) -> int:
        async with self.sessions() as session:
            if is_postgres(session):
                locked = await session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                              {"k": RELAY_LOCK_KEY})
                if not locked:
                    await session.rollback()
                    return LOCK_BUSY
            rows = (await session.scalars(
                select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
                .order_by(OutboxMessage.id).limit(self.batch_size))).all()
            if not rows:
                await session.rollback()
                return 0
            ids = [r.id for r in rows]
            headers = [("content-type", b"application/cloudevents+json")]
            try:
                futures = [await self.producer.send(r.topic, r.payload, key=r.key.encode(), headers=headers)
                           for r in rows]
                await asyncio.gather(*futures)
            except Exception as exc:
                await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(
                    attempts=OutboxMessage.attempts + 1, last_error=str(exc)[:500]))
                await session.commit()
                raise
            await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids))
                                  .values(sent_at=utcnow(), attempts=OutboxMessage.attempts + 1))
            await session.commit()
            self.published += len(rows)
            return len(rows)

    async def purge_sent(self, older_than: datetime) -> int:
        """Delete published rows past their retention; unsent rows are never touched."""
        async with self.sessions() as session, session.begin():
            result = await session.execute(delete(OutboxMessage).where(
                OutboxMessage.sent_at.is_not(None), OutboxMessage.sent_at < older_than))
            return int(getattr(result, "rowcount", 0) or 0)


async def start_relay(state: Any, settings: Settings, group: TaskGroup, name: str) -> OutboxRelay:
    """Start a producer (retrying until the broker answers) and this process's relay, plus the hourly
    purge of published rows past their retention; sets `state.producer` and `state.relay`."""
    producer = make_producer(settings)
    await retry_forever("starting the producer", producer.start)
    state.producer = producer
    relay = OutboxRelay(state.sessions, producer, batch_size=settings.relay_batch_size,
                        poll_interval_s=settings.relay_poll_interval_s)
    state.relay = relay
    group.start(name, relay.run())
    group.start(f"{name}-purge", _purge_forever(relay))
    return relay


async def _purge_forever(relay: OutboxRelay, retention: timedelta = timedelta(days=7)) -> None:
    while True:
        await asyncio.sleep(3600)
        await relay.purge_sent(utcnow() - retention)
