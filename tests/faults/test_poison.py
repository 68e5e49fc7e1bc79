"""A poison event (its handler fails every time) is parked as a dead letter after the configured attempts,
sent to `<prefix>.dlq`, counted on /metrics, and the rest of its partition flows; `leadrouter dlq replay`
puts it back once the cause is fixed. The real broker, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.cli import dead_letters, replay_dead_letters
from shared.config import Settings
from shared.events import CloudEvent, encode, new_event
from shared.kafka import ConsumerLoop, ensure_topics
from shared.models import DeadLetter, OutboxMessage
from shared.outbox import OutboxRelay, dead_letters_waiting


async def test_a_poison_event_is_parked_and_the_partition_flows(
        bootstrap: str, db_url: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    settings = Settings(database_url=db_url, kafka_bootstrap=bootstrap, topic_prefix=f"p{uuid.uuid4().hex[:8]}",
                        topic_partitions=1, consumer_max_attempts=2)
    await ensure_topics(settings)
    lead = str(uuid.uuid4())
    events = [new_event("lead.received", source="/test", subject=lead, data={"n": n}) for n in range(3)]
    handled: list[int] = []
    fixed = False

    async def handler(session: AsyncSession, event: CloudEvent) -> None:
        if event.data["n"] == 1 and not fixed:
            raise ValueError("cannot handle this one")
        handled.append(event.data["n"])

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    loop = ConsumerLoop(settings, sessions, name="poison-test", topics=[settings.leads_topic],
                        group_id=f"{settings.topic_prefix}.g", handlers={"lead.received": handler})
    task = asyncio.create_task(loop.run())
    try:
        for event in events:
            await producer.send_and_wait(settings.leads_topic, encode(event), key=lead.encode())
        for _ in range(200):
            if set(handled) == {0, 2}:
                break
            await asyncio.sleep(0.1)
        # the event after the poison was not held up (a batch rolled back may have run a handler twice)
        assert set(handled) == {0, 2}
        [parked] = await dead_letters(settings)
        assert (parked.consumer, parked.event_id, parked.attempts, parked.topic) == (
            "poison-test", events[1].id, 2, settings.leads_topic)
        assert "cannot handle this one" in parked.error
        async with sessions() as session, session.begin():
            assert await dead_letters_waiting(session) == 1
            [dlq] = (await session.scalars(select(OutboxMessage.payload).where(
                OutboxMessage.topic == settings.dlq_topic))).all()
        assert CloudEvent.parse(dlq).id == events[1].id

        fixed = True  # the cause is fixed: replay it
        assert await replay_dead_letters(settings, None) == 1
        relay = OutboxRelay(sessions, producer)
        assert await relay.publish_batch() == 2  # the copy for <prefix>.dlq and the replay
        await relay.close()
        for _ in range(200):
            if 1 in handled:
                break
            await asyncio.sleep(0.1)
        assert set(handled) == {0, 1, 2} and handled[-1] == 1
        async with sessions() as session, session.begin():
            assert await dead_letters_waiting(session) == 0
            assert (await session.get(DeadLetter, parked.id)).replayed_at is not None  # type: ignore[union-attr]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
