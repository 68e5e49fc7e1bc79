"""Kafka plumbing: topic creation, the producer, and the consume-process-commit loop.

`ConsumerLoop` owns the aiokafka consumer. The records a fetch returns (all its partitions) are handled
in one database transaction, together with a `processed_events` row per CloudEvent id, so a redelivered
event is skipped; the offset is committed only after that transaction commits. When a handler fails the
batch is rolled back and its events are retried one at a time (each in its own transaction, with
backoff); later events of the partition wait, so a lead's events are never handled out of order.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import Settings
from shared.events import CloudEvent
from shared.models import DeadLetter, OutboxMessage, ProcessedEvent, utcnow
from shared.observability import stage
from shared.wakeup import OUTBOX_COMMITTED

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]
# Optional: handles a whole batch at once (same effect as each event's handler in turn, fewer queries).
BatchHandler = Callable[[AsyncSession, list[CloudEvent]], Awaitable[None]]

TOPIC_ALREADY_EXISTS = 36
CONSUME_STAGE = stage("consume")
# Clients read the topics' partitions again this often (Kafka's default is 5 minutes): a topic that came back
# from a restarted broker with another partition count, or one given more partitions by ops, is followed
# within seconds, not read half-blind for minutes. One small request per client.
METADATA_MAX_AGE_MS = 5_000
POSITION_CHECK_S = 5.0  # how often a consumer compares its positions with the ends of the logs


class OncePerMinute(logging.Filter):
    """Let each distinct message through once a minute: aiokafka logs a failed offset commit or an
    unreachable node on every retry, thousands of identical lines while a broker restarts."""

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self.seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka"):
            return True
        key = f"{record.name}:{record.getMessage()}"
        now = time.monotonic()
        if now - self.seen.get(key, -self.every_s) < self.every_s:
            return False
        if len(self.seen) > 10_000:
            self.seen.clear()
        self.seen[key] = now
        return True


def quiet_kafka_logs() -> None:
    """aiokafka: warnings and errors only, each distinct line at most once a minute (a filter on the root
    logger's handlers, since aiokafka logs under many module names)."""
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, OncePerMinute) for f in handler.filters):
            handler.addFilter(OncePerMinute())

async def ensure_topics(settings: Settings, names: list[str] | None = None) -> None:
    """Create the service topics with their partitions (a broker's auto-create would give one)."""
    names = names or [settings.leads_topic, settings.sla_topic, settings.partners_topic, settings.dlq_topic]
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
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )


def make_consumer(settings: Settings, *topics: str, group_id: str, background: bool = False,
                  gather: bool = False) -> AIOKafkaConsumer:
    """`background`: off the path from webhook to offer, so it waits longer for records (see `Settings`).
    `gather` (background too): no person waits on its records (SLA clocks, recalls), so under load it takes a
    batch a wait (`kafka_background_fetch_min_bytes`); not for the router, whose rejections reach the next
    partner through it."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=(settings.background_fetch_wait_ms if background or gather
                           else settings.kafka_fetch_max_wait_ms),
        fetch_min_bytes=settings.kafka_background_fetch_min_bytes if gather else 1,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=min(1_000, settings.kafka_session_timeout_ms // 3),
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
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
    """Run `handler` for `event` unless this consumer already did (or another instance is doing it and
    commits); True when it ran."""
    async with sessions() as session, session.begin():
        if not await claim_events(session, consumer_name, [event]):
            return False
        await handler(session, event)
    return True


async def handle_batch(sessions: async_sessionmaker[AsyncSession], consumer_name: str, events: list[CloudEvent],
                       handlers: dict[str, Handler], batch: BatchHandler | None = None) -> int:
    """Handle a partition's batch in one transaction (one commit for many events); returns how many ran.
    Raises if any handler fails, leaving nothing written, so the caller can retry one by one."""
    if not events:
        return 0
    async with sessions() as session, session.begin():
        fresh = await claim_events(session, consumer_name, events)
        if batch is not None:
            await batch(session, fresh)
        else:
            for event in fresh:
                await handlers[event.name](session, event)
    return len(fresh)


async def claim_events(session: AsyncSession, consumer_name: str, events: list[CloudEvent]) -> list[CloudEvent]:
    """Record `events` as handled by this consumer in the caller's transaction and return those it had not
    handled yet, in order (each id once): one `INSERT .. ON CONFLICT DO NOTHING RETURNING`. An id another
    instance is handling right now makes the insert wait for that transaction; once it commits, the event is
    not returned here (once it rolls back, it is)."""
    unique = list({event.id: event for event in events}.values())  # a repeated id: its first occurrence's place
    stmt = _CLAIM[session.get_bind().dialect.name == "postgresql"]
    now = utcnow()
    claimed = set((await session.scalars(stmt, [{"consumer": consumer_name, "event_id": e.id, "processed_at": now}
                                                for e in unique])).all())
    return [event for event in unique if event.id in claimed]


def _claim(insert: Any) -> Any:
    return insert(ProcessedEvent.__table__).on_conflict_do_nothing().returning(ProcessedEvent.event_id)


_CLAIM = {True: _claim(postgresql.insert), False: _claim(sqlite.insert)}  # built once, keyed by "is PostgreSQL"


class ConsumerLoop:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], *, name: str,
                 topics: list[str], group_id: str, handlers: dict[str, Handler],
                 batch: BatchHandler | None = None, background: bool = False, gather: bool = False) -> None:
        self.settings = settings
        self.background = background  # off the path from webhook to offer: waits longer for records
        self.gather = gather  # no person waits on its records: a batch a wait (see `make_consumer`)
        self.sessions = sessions
        self.name = name
        self.topics = topics
        self.group_id = group_id
        self.handlers = handlers
        self.batch = batch
        self.consumer: AIOKafkaConsumer | None = None
        self.handled = 0
        self.last_error: str | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.parked = 0

    async def run(self) -> None:
        backoff = 0.5
        while True:
            consumer = make_consumer(self.settings, group_id=self.group_id, background=self.background,
                                     gather=self.gather)
            try:
                await asyncio.wait_for(consumer.start(), 30)
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
                await self._abandon(consumer)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        checked = 0.0
        while True:
            if time.monotonic() - checked > POSITION_CHECK_S:
                checked = time.monotonic()
                await self._rewind_past_end(consumer)
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batches:
                continue
            # Partition order is kept by reading each partition's records in order; across partitions
            # order does not matter, so the whole fetch is handled in one transaction and one commit.
            pairs = [(record, event) for records in batches.values() for record in records
                     for event in (self._parse(record),) if event is not None and event.name in self.handlers]
            events = [event for _, event in pairs]
            try:
                self.handled += await handle_batch(self.sessions, self.name, events, self.handlers, self.batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad event must not hold up the others: go one at a time
                log.warning("%s: batch of %d failed; retrying one by one", self.name, len(events), exc_info=True)
                for record, event in pairs:
                    await self._process_with_retry(record, event)
            now = time.time()
            for record, _ in pairs:
                CONSUME_STAGE.observe(max(0.0, now - record.timestamp / 1000))
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})

    async def _abandon(self, consumer: AIOKafkaConsumer) -> None:
        """Stop a consumer, waiting 5 s at most. Leaving the group through a coordinator that died with the
        broker can hang, and not even cancellation ends it (wait_for would wait for ever): such a stop is
        left to finish or fail in the background while a new consumer takes over."""
        task = asyncio.create_task(consumer.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: never "never retrieved"
        await asyncio.wait({task}, timeout=5)
        if not task.done():
            log.warning("%s: the old consumer did not stop within 5s; starting a new one anyway", self.name)

    async def _rewind_past_end(self, consumer: AIOKafkaConsumer) -> None:
        """A broker that lost its log (the bundled one keeps nothing across a restart) leaves positions and
        committed offsets past the end of the new, shorter log, and a fetch there waits for records that
        will never come. Such a partition is read again from its start: every event on it is new to this
        broker, and the ones already handled are skipped by their id. The end is the high watermark the
        last fetch reported (the bundled broker's offset lookup gives the start of the last batch instead)."""
        behind = []
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None:
                continue  # nothing fetched from it yet
            position = await asyncio.wait_for(consumer.position(tp), 10)
            if position > end:
                behind.append(f"{tp.topic}[{tp.partition}] at {position} of {end}")
                consumer.seek(tp, 0)
        if behind:
            log.warning("%s: positions past the end of the log (the broker lost it?): %s; reading those "
                        "partitions from the start", self.name, ", ".join(behind))

    async def _process_with_retry(self, record: Any, event: CloudEvent) -> None:
        """Handle one event, retrying with backoff; after `consumer_max_attempts` failures it is parked as a
        dead letter (and sent to `<prefix>.dlq`), so one poison event cannot stall its partition."""
        attempts = self.settings.consumer_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                if await handle_once(self.sessions, self.name, event, self.handlers[event.name]):
                    self.handled += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = str(exc)
                if attempt == attempts:
                    await self._park(record, event, exc, attempts)
                    return
                log.warning("%s: handling %s %s failed (attempt %d of %d): %s", self.name, event.type, event.id,
                            attempt, attempts, exc)
                await asyncio.sleep(min(0.2 * 2**attempt, 10))

    async def _park(self, record: Any, event: CloudEvent, exc: Exception, attempts: int) -> None:
        """Store the event as a dead letter, mark it handled for this consumer (a redelivery skips it; `leadrouter
        dlq replay` clears that), and publish it to `<prefix>.dlq`, in one transaction."""
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:4000]
        async with self.sessions() as session, session.begin():
            session.add(DeadLetter(consumer=self.name, topic=record.topic, partition=record.partition,
                                   offset=record.offset, key=(record.key or b"").decode(errors="replace")[:200] or None,
                                   event_id=event.id, type=event.type, payload=record.value, error=error,
                                   attempts=attempts, parked_at=utcnow()))
            session.add(ProcessedEvent(consumer=self.name, event_id=event.id))
            session.add(OutboxMessage(event_id=str(uuid.uuid4()), topic=self.settings.dlq_topic,
                                      key=(record.key or b"").decode(errors="replace")[:64] or event.id[:64],
                                      type=event.type, payload=record.value, created_at=utcnow()))
            OUTBOX_COMMITTED.mark(session)
        self.parked += 1
        log.error("%s: parked %s %s (%s[%d]@%d) as a dead letter after %d attempts: %s", self.name, event.type,
                  event.id, record.topic, record.partition, record.offset, attempts, error)

    def _parse(self, record: Any) -> CloudEvent | None:
        try:
            return CloudEvent.parse(record.value)
        except (ValidationError, ValueError):
            log.error("%s: skipping a record that is not a CloudEvent at %s:%s", self.name, record.partition,
                      record.offset)
            return None


async def _admin_and_consumer(settings: Settings, *, request_timeout_ms: int
                              ) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
    """An admin client and a group-less consumer, started; neither is left open if the other fails."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=request_timeout_ms)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None,
                                request_timeout_ms=request_timeout_ms)
    try:
        await admin.start()
        await consumer.start()
    except BaseException:
        await admin.close()
        await consumer.stop()
        raise
    return admin, consumer


async def partitions_of(admin: AIOKafkaAdminClient, topics: set[str]) -> set[tuple[str, int]]:
    """The (topic, partition) pairs the broker lists now: a metadata request, never a client's cache (refreshed
    only on that client's own errors, or every few minutes)."""
    described = await admin.describe_topics(sorted(topics))
    return {(t["topic"], p["partition"]) for t in described if t["error_code"] == 0 for p in t["partitions"]}


class LogWatch:
    """Tells whether the broker lost the logs a relay published to, as the bundled broker does when it
    restarts empty: a partition that is gone, or whose end offset went backwards since the last look.
    (End offsets, not acknowledged offsets, are compared with end offsets: the bundled broker reports a
    log's end as the start of its last batch, so only its own figures compare.)

    Which partitions exist is asked of the broker at every look (a metadata request of the admin client). A
    client's cached metadata is refreshed only on its own errors: a cache refreshed while a restarted broker
    had no topic yet kept saying "gone" after the topic was created again, and the relay published every
    event of the last minutes again at every look, for ever."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.ends: dict[tuple[str, int], int] = {}

    async def lost(self, published: Iterable[tuple[str, int]]) -> list[str]:
        """What the broker lost of the partitions published to (or looked at before)."""
        partitions = set(published) | set(self.ends)
        if not partitions:
            return []
        return await asyncio.wait_for(self._lost(partitions), 10)

    async def _lost(self, partitions: set[tuple[str, int]]) -> list[str]:
        if self.admin is None or self.consumer is None:
            self.admin, self.consumer = await _admin_and_consumer(self.settings, request_timeout_ms=5000)
        exist = await partitions_of(self.admin, {topic for topic, _ in partitions})
        out, present = [], []
        for topic, partition in sorted(partitions):
            if (topic, partition) in exist:
                present.append(TopicPartition(topic, partition))
            else:
                out.append(f"{topic}[{partition}] is gone")
                self.ends.pop((topic, partition), None)
        ends = await self.consumer.end_offsets(present) if present else {}
        for tp in present:
            key, end = (tp.topic, tp.partition), ends[tp]
            if end < self.ends.get(key, 0):
                out.append(f"{tp.topic}[{tp.partition}] ends at {end}, was {self.ends[key]}")
            self.ends[key] = end
        return out

    async def close(self) -> None:
        admin, consumer, self.admin, self.consumer = self.admin, self.consumer, None, None
        if admin is not None:
            await admin.close()
        if consumer is not None:
            await consumer.stop()


class GroupLag:
    """A consumer group's lag as the broker sees it (end offsets minus committed offsets), so any
    instance can report it, whichever instances of the group are consuming."""

    def __init__(self, settings: Settings, group_id: str, topic: str) -> None:
        self.settings, self.group_id, self.topic = settings, group_id, topic
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None

    async def measure(self) -> int:
        return await asyncio.wait_for(self._measure(), 2.0)

    async def _measure(self) -> int:
        if self.admin is None or self.consumer is None:
            self.admin, self.consumer = await _admin_and_consumer(self.settings, request_timeout_ms=3000)
        tps = [TopicPartition(t, p) for t, p in sorted(await partitions_of(self.admin, {self.topic}))]
        if not tps:
            return 0
        ends = await self.consumer.end_offsets(tps)
        committed = await self.admin.list_consumer_group_offsets(self.group_id, partitions=tps)
        lag = 0
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag += max(0, ends[tp] - done)
        return lag

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()
        self.admin = self.consumer = None
