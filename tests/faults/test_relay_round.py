"""A relay round that fails leaves its rows unsent, with the attempt counted, and the next round publishes
them; on PostgreSQL the round runs on the relay's own connection, which a lost connection or a cancelled
round replaces without losing an event."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import Settings
from shared.db import asyncpg_dsn
from shared.kafka import ensure_topics
from shared.models import OutboxMessage
from shared.outbox import LOCK_BUSY, OutboxRelay, add_event
from tests.faults.test_relay_order import FailingOnce
from tests.fixtures.processes import read_events


async def stage(sessions: async_sessionmaker[AsyncSession], topic: str, n: int) -> list[str]:
    async with sessions() as session, session.begin():
        return [add_event(session, topic=topic, name="lead.activity", source="/test", subject=str(uuid.uuid4()),
                          data={"i": i}).id for i in range(n)]


async def rows(sessions: async_sessionmaker[AsyncSession]) -> dict[str, tuple[bool, int, str | None]]:
    """event id -> (sent, attempts, last error)."""
    async with sessions() as session:
        result = await session.execute(select(OutboxMessage.event_id, OutboxMessage.sent_at, OutboxMessage.attempts,
                                              OutboxMessage.last_error))
        return {e: (sent is not None, attempts, error) for e, sent, attempts, error in result.all()}


@pytest.fixture
async def topic_and_producer(bootstrap: str):  # type: ignore[no-untyped-def]
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=f"r{uuid.uuid4().hex[:8]}", topic_partitions=2)
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        yield settings.leads_topic, producer
    finally:
        await producer.stop()


async def test_a_failed_send_leaves_the_rows_unsent_with_the_attempt_counted(
        bootstrap: str, sessions: async_sessionmaker[AsyncSession], topic_and_producer) -> None:  # type: ignore[no-untyped-def]
    topic, producer = topic_and_producer
    ids = await stage(sessions, topic, 3)
    relay = OutboxRelay(sessions, FailingOnce(producer, {ids[1]}))
    with pytest.raises(KafkaError):
        await relay.publish_batch()
    after = await rows(sessions)
    assert {e: sent for e, (sent, _, _) in after.items()} == dict.fromkeys(ids, False)  # none claimed for good
    assert {e: attempts for e, (_, attempts, _) in after.items()} == dict.fromkeys(ids, 1)
    assert all("injected" in (error or "") for _, _, error in after.values())
    assert relay.published == 0
    assert await relay.publish_batch() == 3
    await relay.close()
    after = await rows(sessions)
    assert {e: (sent, attempts) for e, (sent, attempts, _) in after.items()} == dict.fromkeys(ids, (True, 2))
    records = await read_events(bootstrap, topic, until=lambda evs: {ev.id for _, ev in evs} >= set(ids))
    assert {ev.id for _, ev in records} >= set(ids)


POSTGRES_ONLY = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@POSTGRES_ONLY  # the relay's own connection is PostgreSQL's
async def test_the_relay_survives_losing_its_connection_and_a_cancelled_round(
        bootstrap: str, db_url: str, sessions: async_sessionmaker[AsyncSession], topic_and_producer) -> None:  # type: ignore[no-untyped-def]
    topic, producer = topic_and_producer
    relay = OutboxRelay(sessions, producer)
    ids = await stage(sessions, topic, 2)
    assert await relay.publish_batch() == 2
    # The server ends the relay's connection between two rounds: one round fails, the next reconnects.
    admin = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        pid = relay._connection.get_server_pid()
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        ids += await stage(sessions, topic, 2)
        published = 0
        for _ in range(3):
            try:
                published += await relay.publish_batch()
                break
            except Exception:  # noqa: BLE001 - asyncpg reports a connection ended under it several ways
                continue
        assert published == 2
        assert relay._connection.get_server_pid() != pid

        # A round cancelled while it waits for the broker: its transaction ends with its connection, the claim
        # undone, and no lock is left held for the next round.
        ids += await stage(sessions, topic, 2)
        slow = asyncio.Event()

        class Stalling:
            def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
                return getattr(producer, name)

            async def send_batch(self, *_args: object, **_kwargs: object) -> asyncio.Future[object]:
                slow.set()
                await asyncio.sleep(3600)
                raise AssertionError("unreachable")

        stalled = OutboxRelay(sessions, Stalling())
        task = asyncio.create_task(stalled.publish_batch())
        await asyncio.wait_for(slow.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stalled._connection is None
        assert [sent for sent, _, _ in (await rows(sessions)).values()].count(False) == 2
        for _ in range(100):  # the server ends the dropped connection's transaction (its lock) a moment later
            published = await relay.publish_batch()
            if published != LOCK_BUSY:
                break
            await asyncio.sleep(0.05)
        assert published == 2  # neither the lock nor the rows were left held
        assert await relay.publish_batch() == 0
        assert {sent for sent, _, _ in (await rows(sessions)).values()} == {True}
    finally:
        await admin.close()
        await relay.close()
    records = await read_events(bootstrap, topic, until=lambda evs: {ev.id for _, ev in evs} >= set(ids))
    assert {ev.id for _, ev in records} >= set(ids)


@POSTGRES_ONLY  # the transaction-scoped advisory lock is PostgreSQL's
async def test_a_round_finds_the_lock_held_by_another_relay(
        db_url: str, sessions: async_sessionmaker[AsyncSession], topic_and_producer) -> None:  # type: ignore[no-untyped-def]
    topic, producer = topic_and_producer
    await stage(sessions, topic, 1)
    holder = await asyncpg.connect(asyncpg_dsn(db_url))
    relay = OutboxRelay(sessions, producer)
    try:
        async with holder.transaction():
            assert await holder.fetchval("SELECT pg_try_advisory_xact_lock(746215001)")
            assert await relay.publish_batch() == LOCK_BUSY
        assert await relay.publish_batch() == 1
    finally:
        await holder.close()
        await relay.close()


async def test_a_round_hands_the_producer_closed_batches(
        sessions: async_sessionmaker[AsyncSession], topic_and_producer) -> None:  # type: ignore[no-untyped-def]
    """aiokafka holds an open batch for the producer's `linger_ms` before sending it; the relay's batches are
    complete when handed over, so they are closed and go out at once (a round took 1.2 ms longer)."""
    topic, producer = topic_and_producer
    handed: list[bool] = []

    class Watching:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(producer, name)

        async def send_batch(self, batch, topic: str, *, partition: int):  # type: ignore[no-untyped-def]
            handed.append(batch.closed())
            return await producer.send_batch(batch, topic, partition=partition)

    await stage(sessions, topic, 5)
    relay = OutboxRelay(sessions, Watching())
    try:
        assert await relay.publish_batch() == 5
    finally:
        await relay.close()
    assert handed and all(handed)


def test_a_relay_needs_sessions_bound_to_one_engine() -> None:
    """Unbound sessions would leave it guessing the database, and with it the lock that orders publishing."""
    with pytest.raises(ValueError, match="bound to one engine"):
        OutboxRelay(async_sessionmaker(), None)
