"""Each relay round marks what the broker acknowledged before another round (of this relay or of another
process's) reads: every event reaches the log once, however the rounds of two relays interleave."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import Settings
from shared.kafka import ensure_topics
from shared.models import OutboxMessage
from shared.outbox import OutboxRelay, add_event
from tests.fixtures.processes import read_events


async def stage(sessions: async_sessionmaker[AsyncSession], topic: str, n: int) -> list[str]:
    async with sessions() as session, session.begin():
        return [add_event(session, topic=topic, name="lead.activity", source="/test", subject=str(uuid.uuid4()),
                          data={"i": i}).id for i in range(n)]


async def unsent(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).where(OutboxMessage.sent_at.is_(None))) or 0)


async def test_two_relays_taking_turns_publish_each_event_once(
        bootstrap: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=f"m{uuid.uuid4().hex[:8]}", topic_partitions=2)
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        first, second = OutboxRelay(sessions, producer), OutboxRelay(sessions, producer)
        ids = await stage(sessions, settings.leads_topic, 3)
        assert await first.publish_batch() == 3
        assert await unsent(sessions) == 0  # marked in the round that published them
        assert await second.publish_batch() == 0
        ids += await stage(sessions, settings.leads_topic, 4)
        assert await second.publish_batch() == 4
        assert await first.publish_batch() == 0
        assert await unsent(sessions) == 0
        records = await read_events(bootstrap, settings.leads_topic, until=lambda evs: len(evs) >= len(ids))
        assert sorted(ev.id for _, ev in records) == sorted(ids)
        await first.close()
        await second.close()
    finally:
        await producer.stop()
