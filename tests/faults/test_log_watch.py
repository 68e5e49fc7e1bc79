"""The relay's LogWatch after the bundled broker restarted empty and another client re-created a topic.

The watch must see the broker as it is now: the loss once, then the new logs as they grow. It used to read a
metadata cache that was refreshed while the topic did not exist and never again, so it said "gone" at every
check, and the relay published again every event of the last five minutes every two seconds, for ever.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer

from shared.broker import free_port, start_broker, stop_process
from shared.config import Settings
from shared.kafka import LogWatch, ensure_topics, make_producer


class Restartable:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = start_broker(self.port)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def restart(self) -> None:
        stop_process(self.proc)
        self.proc = start_broker(self.port)


@pytest.fixture
def broker() -> Iterator[Restartable]:
    running = Restartable()
    try:
        yield running
    finally:
        stop_process(running.proc)


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


async def test_the_watch_reports_a_lost_log_once_and_then_sees_the_new_one(broker: Restartable) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"w{uuid.uuid4().hex[:8]}",
                        topic_partitions=6)
    await ensure_topics(settings)
    watch = LogWatch(settings)
    try:
        await _restart_under(watch, broker, settings)
    finally:
        await watch.close()


async def _restart_under(watch: LogWatch, broker: Restartable, settings: Settings) -> None:
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
