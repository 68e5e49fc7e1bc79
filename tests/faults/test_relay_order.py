"""A lead's events keep their order on the log when the producer fails between sends (no idempotent
producer on the bundled broker): an event is never on the log before an earlier event of its lead."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import Settings
from shared.events import CloudEvent
from shared.kafka import ensure_topics
from shared.outbox import OutboxRelay, add_event
from tests.fixtures.processes import read_events


class FailingOnce:
    """The real producer, except that the first send of a batch holding an event id of `fail` fails (the
    broker takes a record batch whole or not at all); the other batches of that request go through."""

    def __init__(self, producer: AIOKafkaProducer, fail: set[str]) -> None:
        self.producer, self.fail = producer, set(fail)
        self.holds: dict[int, list[str]] = {}  # id(batch) -> the event ids appended to it

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)

    def create_batch(self) -> Any:
        batch = self.producer.create_batch()
        held = self.holds[id(batch)] = []
        append = batch.append

        def recording(**kwargs: Any) -> Any:
            meta = append(**kwargs)
            if meta is not None:
                held.append(CloudEvent.parse(kwargs["value"]).id)
            return meta

        batch.append = recording
        return batch

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        doomed = self.fail.intersection(self.holds.pop(id(batch)))
        if doomed:
            self.fail -= doomed
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(KafkaError("injected: the broker did not take it"))
            return failed
        return await self.producer.send_batch(batch, topic, partition=partition)


@pytest.mark.parametrize("padding", [0, 7_000], ids=["one-batch-per-partition", "several-batches-per-partition"])
async def test_per_lead_order_survives_partial_publish_failures(
        bootstrap: str, db_url: str, sessions: async_sessionmaker[AsyncSession], padding: int) -> None:
    """With `padding`, two events fill a record batch (16 KiB), so a partition's round goes in several
    batches, one after the other."""
    settings = Settings(database_url=db_url, kafka_bootstrap=bootstrap, topic_prefix=f"o{uuid.uuid4().hex[:8]}",
                        topic_partitions=2)
    await ensure_topics(settings)
    leads = [str(uuid.uuid4()) for _ in range(4)]
    order: dict[str, list[str]] = {lead: [] for lead in leads}
    async with sessions() as session, session.begin():
        for step in range(3):  # interleaved: every lead's first event, then every second, ...
            for lead in leads:
                ev = add_event(session, topic=settings.leads_topic, name="lead.activity", source="/test",
                               subject=lead, data={"step": step, "padding": "x" * padding})
                order[lead].append(ev.id)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        # the first event of two leads and the second of another fail once; the rest go through
        flaky = FailingOnce(producer, {order[leads[0]][0], order[leads[1]][0], order[leads[2]][1]})
        relay = OutboxRelay(sessions, flaky)
        for _ in range(10):
            try:
                if await relay.publish_batch() == 0:
                    break
            except KafkaError:
                continue
        await relay.close()
        total = sum(len(ids) for ids in order.values())
        records = await read_events(bootstrap, settings.leads_topic,
                                    until=lambda evs: len({ev.id for _, ev in evs}) >= total)
    finally:
        await producer.stop()
    for lead in leads:
        first_seen: list[str] = []
        for _, ev in sorted(records, key=lambda pair: (pair[0].partition, pair[0].offset)):
            if ev.subject == lead and ev.id not in first_seen:
                first_seen.append(ev.id)
        assert first_seen == order[lead], f"lead {lead}: {first_seen} != {order[lead]}"
