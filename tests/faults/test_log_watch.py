"""The relay after the bundled broker restarted empty and the topics came back, created by whoever came first.

The watch must see the broker as it is now: the loss once, then the new logs as they grow. It used to read a
metadata cache that was refreshed while the topic did not exist and never again, so it said "gone" at every
check, and the relay published again every event of the last five minutes every two seconds, for ever.
And the relay must publish where consumers read: a topic that came back with fewer partitions than the
producer's metadata listed took writes to the missing ones, which no consumer was assigned.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import Settings
from shared.kafka import LogWatch, ensure_topics, make_producer
from shared.outbox import OutboxRelay
from tests.faults.test_relay_marks import stage, unsent
from tests.fixtures.processes import RestartableBroker


@pytest.fixture
def broker() -> Iterator[RestartableBroker]:
    running = RestartableBroker()
    try:
        yield running
    finally:
        running.stop()


async def publish(settings: Settings, count: int) -> set[tuple[str, int]]:
    """Send `count` records keyed 0..count-1 to the leads topic; the partitions acknowledged."""
    producer = make_producer(settings)
    await producer.start()
    try:
        acks = [await producer.send_and_wait(settings.leads_topic, b"event", key=str(i).encode())
                for i in range(count)]
    finally:
        await producer.stop()
    return {(ack.topic, ack.partition) for ack in acks}


async def test_the_watch_reports_a_lost_log_once_and_then_sees_the_new_one(broker: RestartableBroker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"w{uuid.uuid4().hex[:8]}",
                        topic_partitions=6)
    await ensure_topics(settings)
    watch = LogWatch(settings)
    try:
        await _restart_under(watch, broker, settings)
    finally:
        await watch.close()


async def _restart_under(watch: LogWatch, broker: RestartableBroker, settings: Settings) -> None:
    marks = await publish(settings, 30)
    assert await watch.lost(marks) == []

    broker.restart()  # empty; a consumer's metadata request creates the topic again, with the broker's count
    consumer = AIOKafkaConsumer(settings.leads_topic, bootstrap_servers=broker.bootstrap, group_id=None)
    await consumer.start()
    recreated = consumer.partitions_for_topic(settings.leads_topic) or set()
    await consumer.stop()
    assert recreated, "the topic was not created again"

    lost = await watch.lost(marks)
    assert lost, "the restart went unnoticed"

    marks = await publish(settings, 30)  # the relay publishes again; its marks are the new log's
    assert {partition for _, partition in marks} <= recreated
    for _ in range(3):  # checked every two seconds by the relay: nothing more is lost
        assert await watch.lost(marks) == []
    marks |= await publish(settings, 10)
    assert await watch.lost(marks) == []


async def test_after_the_topic_came_back_smaller_the_relay_publishes_where_consumers_read(
        broker: RestartableBroker, sessions: async_sessionmaker[AsyncSession]) -> None:
    """The restarted broker re-created the topic with its own, smaller partition count. The producer's metadata
    still listed the old partitions and the bundled broker took writes to the missing ones: leads keyed there
    reached no consumer, and the watch saw them 'gone' at every look (a replay every two seconds)."""
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"w{uuid.uuid4().hex[:8]}",
                        topic_partitions=6)
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    relay = OutboxRelay(sessions, producer, watch=LogWatch(settings))
    relay.ensure_topics = lambda: ensure_topics(settings)
    try:
        await stage(sessions, settings.leads_topic, 40)
        await relay.verify()
        assert await relay.publish_batch() == 40
        assert len({partition for _, partition in relay.marks}) > 4  # the keys spread over the six partitions

        broker.restart()
        # Creations race after a restart (the relay's, a client's auto-create): the producer may learn six
        # partitions, then the topic the others see has the broker's own count. Played here in that order.
        await ensure_topics(settings)
        await stage(sessions, settings.leads_topic, 1)
        for _ in range(20):  # the producer reconnects and reads six partitions
            try:
                assert await relay.publish_batch() == 1
                break
            except Exception:  # noqa: BLE001 - still reconnecting
                await asyncio.sleep(0.5)
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        await admin.delete_topics([settings.leads_topic])
        await admin.create_topics([NewTopic(settings.leads_topic, 3, 1)])
        await admin.close()
        consumer = AIOKafkaConsumer(settings.leads_topic, bootstrap_servers=broker.bootstrap, group_id=None)
        await consumer.start()
        recreated = consumer.partitions_for_topic(settings.leads_topic) or set()
        await consumer.stop()
        assert recreated == {0, 1, 2}, recreated  # what consumers are assigned

        converged = False
        for _ in range(10):  # the relay's rounds: look at the logs, publish what is unsent
            try:
                await relay.verify()
                while await relay.publish_batch() > 0:
                    pass
            except Exception:  # noqa: BLE001 - the producer reconnecting to the restarted broker
                await asyncio.sleep(0.5)
                continue
            converged = {partition for _, partition in relay.marks} <= recreated
            if converged:
                break
        assert converged, f"still publishing to {sorted(relay.marks)} of a topic with partitions {recreated}"
        assert await unsent(sessions) == 0
        await relay.close()
        assert relay.watch is not None and await relay.watch.lost(relay.marks) == []
    finally:
        await producer.stop()
        if relay.watch is not None:
            await relay.watch.close()
