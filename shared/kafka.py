"""Kafka plumbing: topic creation, the producer, and the consume-process-commit loop.

`ConsumerLoop` owns the aiokafka consumer. Each record is handled in its own database transaction,
together with a `processed_events` row for its CloudEvent id, so a redelivered event is skipped; the
offset is committed only after that transaction commits. When a handler fails the loop rolls back,
seeks the partition back to the failed record and retries with backoff; the rest of the batch for that
partition waits, so a lead's events are never handled out of order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import Settings
from shared.events import CloudEvent
from shared.models import ProcessedEvent

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]

TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(settings: Settings, names: list[str] | None = None) -> None:
    """Create the service topics with their partitions (a broker's auto-create would give one)."""
    names = names or [settings.leads_topic, settings.sla_topic, settings.partners_topic]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, settings.topic_partitions, settings.topic_replication_factor)
                   for n in names if n not in existing]
        if missing:
            response = await admin.create_topics(missing)
            for topic, code, message in (e[:3] for e in response.topic_errors):
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"creating topic {topic} failed: {code} {message}")
    finally:
        await admin.close()


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        enable_idempotence=settings.kafka_idempotent_producer,
        linger_ms=1,
        request_timeout_ms=10_000,
    )


def make_consumer(settings: Settings, *topics: str, group_id: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
    )


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, loop: ConsumerLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("%s: partitions revoked %s", self.loop.name, sorted(str(tp) for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("%s: partitions assigned %s", self.loop.name, sorted(str(tp) for tp in assigned))


async def handle_once(sessions: async_sessionmaker[AsyncSession], consumer_name: str, event: CloudEvent,
                      handler: Handler) -> bool:
    """Run `handler` for `event` unless this consumer already did; True when it ran."""
    async with sessions() as session:
        try:
            async with session.begin():
                seen = await session.scalar(select(ProcessedEvent.event_id).where(
                    ProcessedEvent.consumer == consumer_name, ProcessedEvent.event_id == event.id))
                if seen:
                    return False
                session.add(ProcessedEvent(consumer=consumer_name, event_id=event.id))
                await handler(session, event)
        except IntegrityError:
            # Another instance handled the same event concurrently and committed first.
            async with sessions() as check:
                if await check.scalar(select(ProcessedEvent.event_id).where(
                        ProcessedEvent.consumer == consumer_name, ProcessedEvent.event_id == event.id)):
                    return False
            raise
    return True


class ConsumerLoop:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], *, name: str,
                 topics: list[str], group_id: str, handlers: dict[str, Handler]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.name = name
        self.topics = topics
        self.group_id = group_id
        self.handlers = handlers
        self.consumer: AIOKafkaConsumer | None = None
        self.handled = 0
        self.last_error: str | None = None
        self.lag = 0

    async def run(self) -> None:
        backoff = 0.5
        while True:
            consumer = make_consumer(self.settings, group_id=self.group_id)
            try:
                await consumer.start()
                consumer.subscribe(self.topics, listener=_Rebalance(self))
                self.consumer = consumer
                backoff = 0.5
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker gone: start over with a new consumer
                self.last_error = str(exc)
                log.warning("%s: consumer failed (%s); restarting in %.1fs", self.name, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
            finally:
                self.consumer = None
                try:
                    await consumer.stop()
                except Exception:  # noqa: BLE001 - stopping a broken consumer must not mask the cause
                    log.debug("%s: consumer stop failed", self.name, exc_info=True)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=200)
            for tp, records in batches.items():
                await self._process_partition(consumer, tp, records)
            await self._update_lag(consumer)

    async def _process_partition(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                                 records: list[Any]) -> None:
        for record in records:
            attempt = 0
            while True:
                try:
                    await self._process(record)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    attempt += 1
                    self.last_error = str(exc)
                    log.exception("%s: handling offset %s of %s failed (attempt %d)", self.name,
                                  record.offset, tp, attempt)
                    await asyncio.sleep(min(0.2 * 2**attempt, 10))
            await consumer.commit({tp: record.offset + 1})

    async def _process(self, record: Any) -> None:
        try:
            event = CloudEvent.parse(record.value)
        except (ValidationError, ValueError):
            log.error("%s: skipping a record that is not a CloudEvent at %s:%s", self.name,
                      record.partition, record.offset)
            return
        handler = self.handlers.get(event.name)
        if handler is None:
            return
        if await handle_once(self.sessions, self.name, event, handler):
            self.handled += 1

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        total = 0
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                total += max(0, high - await consumer.position(tp))
        self.lag = total
