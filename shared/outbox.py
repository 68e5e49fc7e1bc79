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
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db import asyncpg_dsn, delete_in_batches, is_sqlite, notify_at_commit, stage_insert
from shared.events import CloudEvent, encode, new_event
from shared.kafka import LogWatch, ensure_topics, make_producer
from shared.models import DeadLetter, OutboxMessage, ProcessedEvent, utcnow
from shared.observability import DB_STATEMENTS, DB_TRANSACTIONS, RELAY_LEADING, stage
from shared.tasks import TaskGroup, every, retry_forever
from shared.wakeup import OUTBOX_COMMITTED

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 746_215_001
LOG_CHECK_S = 2.0  # how often a relay checks that the broker still holds what it published
LOCK_BUSY = -1

def add_event(session: AsyncSession, *, topic: str, name: str, source: str, subject: str,
              data: dict[str, Any], at: datetime | None = None) -> CloudEvent:
    """Stage a CloudEvent for publication in the caller's transaction."""
    ev = new_event(name, source=source, subject=subject, data=data, at=at)
    stage_event(session, topic, ev)
    return ev


def stage_event(session: AsyncSession, topic: str, ev: CloudEvent) -> None:
    """Stage an event the caller built for publication in its transaction (see `add_event`)."""
    stage_insert(session, OutboxMessage, event_row(topic, ev))
    OUTBOX_COMMITTED.mark(session)


def event_row(topic: str, ev: CloudEvent) -> dict[str, Any]:
    """The outbox row that publishes `ev` to `topic`, keyed by its subject."""
    return {"event_id": ev.id, "topic": topic, "key": ev.subject, "type": ev.type, "payload": encode(ev),
            "created_at": ev.time, "attempts": 0}


async def backlog(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).where(OutboxMessage.sent_at.is_(None))) or 0)


async def dead_letters_waiting(session: AsyncSession) -> int:
    """Parked events not replayed yet (`leadrouter dlq list`): anything above 0 wants a person."""
    return int(await session.scalar(select(func.count()).select_from(DeadLetter)
                                    .where(DeadLetter.replayed_at.is_(None))) or 0)


class _Unsent(NamedTuple):
    """An outbox row to publish, as plain values (it outlives the transaction that read it)."""

    id: int
    topic: str
    key: str
    payload: bytes
    created_at: datetime


_TRY_LOCK = "SELECT pg_try_advisory_xact_lock($1)"
# The oldest unsent rows, marked sent (and their attempt counted) by the transaction that publishes them.
# `sent_at IS NULL` is not checked again on the rows the subquery picked: nothing but the holder of the relay
# lock sets `sent_at` on an unsent row, so none can be claimed twice.
_CLAIM = ("UPDATE outbox SET sent_at = $1, attempts = attempts + 1 WHERE id IN "
          "(SELECT id FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $2) "
          "RETURNING id, topic, key, payload, created_at")


def _postgres_dsn(sessions: async_sessionmaker[AsyncSession]) -> str | None:
    """The asyncpg DSN of the database `sessions` are bound to, when it is PostgreSQL (None: SQLite)."""
    engine = getattr(sessions.kw.get("bind"), "engine", None)
    if engine is None:  # unbound, or per-table binds: which database publishes, and with what lock, is unknown
        raise ValueError("the outbox relay needs sessions bound to one engine")
    return asyncpg_dsn(engine.url) if engine.url.get_backend_name() == "postgresql" else None


async def _end(transaction: Any, *, commit: bool) -> None:
    await (transaction.commit() if commit else transaction.rollback())
    DB_TRANSACTIONS.labels("commit" if commit else "rollback").inc()


class OutboxRelay:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], producer: Any, *, batch_size: int = 500,
                 poll_interval_s: float = 0.2, max_backoff_s: float = 5.0, lock_path: Path | None = None,
                 watch: LogWatch | None = None, replay_margin_s: float = 300.0) -> None:
        self.sessions = sessions
        self.lock_path = lock_path  # SQLite: the file whose lock makes this the one relay publishing
        # Broker loss: the highest offset acknowledged per (topic, partition), checked against the logs.
        self.watch = watch
        self.replay_margin = timedelta(seconds=replay_margin_s)
        self.marks: dict[tuple[str, int], int] = {}
        self.healthy_at: datetime | None = None  # when the broker last held everything we published
        self.checked = 0.0
        self.suspect = True  # check before publishing: at start-up, and after any failure
        self.ensure_topics: Callable[[], Awaitable[None]] | None = None
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.published = 0
        self.leadership: RelayLeadership | None = None  # PostgreSQL: publish only while leading
        # PostgreSQL: the rounds run on a connection of the relay's own, through asyncpg (see `_round`).
        self.dsn = _postgres_dsn(sessions)
        self._connection: Any = None

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            await self.close()
            if self.watch is not None:
                await self.watch.close()

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if self.leadership is not None and not self.leadership.is_leader.is_set():
                await self.leadership.is_leader.wait()  # a standby: another process's relay publishes
            try:
                if self.watch is not None and (self.suspect or time.monotonic() - self.checked > LOG_CHECK_S):
                    await self.verify()
                sent = await self.publish_batch()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker down, database busy: keep the rows, try again later
                self.suspect = True
                log.warning("outbox relay: publish failed (%s); retrying in %.2fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            if sent >= self.batch_size:
                continue
            if sent == LOCK_BUSY and (self.lock_path is not None or self.leadership is None):
                # Another relay is publishing and no leadership tells who wakes for our rows: retry soon.
                await asyncio.sleep(0.005)
                continue
            # PostgreSQL: the leader is woken by a notification for every commit with events, in any process.
            await OUTBOX_COMMITTED.wait(self.poll_interval_s)

    async def publish_batch(self) -> int:
        """Publish the oldest unsent rows, in id order; their count, 0 when there were none, or LOCK_BUSY.

        One relay publishes at a time, so a lead's events keep their order. On PostgreSQL a
        transaction-scoped advisory lock says which, and its transaction claims the rows (marks them sent, one
        `UPDATE .. RETURNING`), waits for the broker (the row locks block no writer: nothing else updates an
        unsent row), then commits; when the broker fails, it rolls back and the rows stay unsent.
        On SQLite every transaction takes the database's write lock, so
        the rows are read in one short transaction and marked sent in another, the broker is waited for
        in between with no transaction open, and a lock on a file beside the database says which relay
        publishes."""
        if self.dsn is not None:
            return await self._round()
        if self.lock_path is not None:
            with _FileLock(self.lock_path) as held:
                if not held:
                    return LOCK_BUSY
                async with self.sessions() as session, session.begin():
                    rows = await self._unsent(session)
                return await self._publish(rows)
        async with self.sessions() as session:
            rows = await self._unsent(session)
            await session.rollback()  # SQLite without a lock file (in memory): never wait for Kafka holding it
        return await self._publish(rows)

    async def _round(self) -> int:
        """PostgreSQL: one round in four round trips (BEGIN, the lock, the claim, COMMIT) on the relay's own
        connection, through asyncpg itself: the relay runs for nearly every commit that adds events, and the same
        round through the ORM session cost six times the CPU (2 ms a round, a millisecond a lead at 200 leads/s).
        Rows come back in id order whatever order the claim returns them in."""
        conn = await self._connect()
        transaction = conn.transaction()
        try:
            await transaction.start()
            DB_STATEMENTS.inc()
            if not await conn.fetchval(_TRY_LOCK, RELAY_LOCK_KEY):
                await _end(transaction, commit=False)
                return LOCK_BUSY
            DB_STATEMENTS.inc()
            rows = sorted(_Unsent(*record) for record in await conn.fetch(_CLAIM, utcnow(), self.batch_size))
            if not rows:
                await _end(transaction, commit=False)
                return 0
            try:
                acks = await self._send(rows)
            except Exception as exc:
                failed: Exception | None = exc
            else:
                failed = None
            await _end(transaction, commit=failed is None)  # a rollback undoes the claim: the rows are unsent
        except BaseException:
            await self._disconnect()  # a failed statement or a cancellation mid-round: the next starts clean
            raise
        if failed is not None:
            await self._count_failure([r.id for r in rows], failed)
            raise failed
        return await self._sent(rows, acks, utcnow())

    async def _connect(self) -> Any:
        import asyncpg  # PostgreSQL only

        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(self.dsn, timeout=10)
        return self._connection

    async def close(self) -> None:
        """Close the relay's own connection (PostgreSQL); `run()` does it when it ends."""
        await self._disconnect()

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()  # no round trip: a relay stopping or starting clean never waits on it

    async def verify(self) -> None:
        """Check that the broker still holds what this relay published; if it lost it (a broker restarted
        empty), publish again every event sent since shortly before it was last seen whole. Consumers are
        idempotent on the event id, so what they had already handled is skipped; what they had not seen
        yet (events published, then lost with the broker) reaches them. Raises while the broker is away."""
        assert self.watch is not None
        lost = await self.watch.lost(self.marks.keys())
        if lost:
            await self._replay(lost)
        self.checked, self.suspect, self.healthy_at = time.monotonic(), False, utcnow()

    async def _replay(self, lost: list[str]) -> None:
        if self.ensure_topics is not None:
            await self.ensure_topics()
        # The topics may have come back with other partitions (a restarted bundled broker creates them with its
        # own count, and creations race). The producer's metadata may still list the old ones, and that broker
        # takes writes to a partition it no longer lists: keys would map where no consumer reads. Read it again.
        await self.producer.client.force_metadata_update()
        since = (self.healthy_at or utcnow()) - self.replay_margin
        async with self.sessions() as session, session.begin():
            result = await session.execute(update(OutboxMessage).where(OutboxMessage.sent_at >= since)
                                           .values(sent_at=None))
        count = int(getattr(result, "rowcount", 0) or 0)
        self.marks.clear()
        log.warning("outbox relay: the broker lost events it had acknowledged (%s); publishing again the %d "
                    "event(s) sent since %s", "; ".join(lost[:5]), count, since.isoformat())

    async def _unsent(self, session: AsyncSession) -> list[Any]:
        """The oldest unsent rows as plain values (they outlive the transaction that read them)."""
        return list((await session.execute(
            select(OutboxMessage.id, OutboxMessage.topic, OutboxMessage.key, OutboxMessage.payload,
                   OutboxMessage.created_at)
            .where(OutboxMessage.sent_at.is_(None)).order_by(OutboxMessage.id).limit(self.batch_size))).all())

    async def _publish(self, rows: list[Any]) -> int:
        """Send `rows` and wait for every acknowledgement, then mark them sent in a transaction of their own;
        on failure count the attempt and raise, leaving them all unsent (what did get through is sent again: a
        duplicate, which consumers skip by its id)."""
        if not rows:
            return 0
        ids = [r.id for r in rows]
        try:
            acks = await self._send(rows)
        except Exception as exc:
            await self._count_failure(ids, exc)
            raise
        now = utcnow()
        async with self.sessions() as session, session.begin():
            await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(
                sent_at=now, attempts=OutboxMessage.attempts + 1))
        return await self._sent(rows, acks, now)

    async def _count_failure(self, ids: list[int], exc: Exception) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(
                attempts=OutboxMessage.attempts + 1, last_error=str(exc)[:500]))

    async def _sent(self, rows: list[Any], acks: list[tuple[str, int, int, int]], now: datetime) -> int:
        """Bookkeeping once `rows` are on the log and marked sent: the relay stage, and the offsets the broker
        must keep (a partition acknowledged below what it acknowledged before lost its log: publish again)."""
        self.published += len(rows)
        for row in rows:
            RELAY_STAGE.observe(max(0.0, (now - row.created_at).total_seconds()))
        backwards = [f"{topic}[{partition}] acknowledged offset {first} after {self.marks[(topic, partition)]}"
                     for topic, partition, first, _ in acks if first <= self.marks.get((topic, partition), -1)]
        if backwards and self.watch is not None:  # the log restarted under us between two checks
            await self._replay(backwards)
        for topic, partition, _, last in acks:
            self.marks[(topic, partition)] = max(last, self.marks.get((topic, partition), -1))
        return len(rows)

    async def _send(self, rows: list[Any]) -> list[tuple[str, int, int, int]]:
        """Publish `rows` (in id order) keyed by lead id; per record batch its (topic, partition, first offset,
        last offset), once the broker has acknowledged every one.

        A partition's rows go in record batches (16 KiB), which the broker appends whole or not at all, and
        its next batch is sent only once the one before is acknowledged: every partition's first batch goes out
        together (one request per broker), then every second one, and so on. At moderate rates a round fits
        one batch per partition, so it is one request; the waves by a lead's depth this replaced took one per
        event of a lead in the round. So an event is never on the log unless every earlier event of its key (a
        lead) is, before it, even without an idempotent producer, and even when a send fails and the round is
        sent again."""
        partitions = {topic: sorted(await self.producer.partitions_for(topic)) for topic in {r.topic for r in rows}}
        chains: dict[tuple[str, int], list[_Batch]] = {}  # per partition, its batches in order
        for row in rows:
            key = row.key.encode()
            chain = chains.setdefault((row.topic, _PARTITIONER(key, *[partitions[row.topic]] * 2)), [])
            if not chain or not chain[-1].add(key, row.payload):
                chain.append(_Batch(self.producer.create_batch()))
                chain[-1].add(key, row.payload)  # a batch takes its first record whatever its size
        acks: list[tuple[str, int, int, int]] = []
        for step in range(max(len(chain) for chain in chains.values())):
            sent: list[tuple[tuple[str, int], int, Any]] = []
            try:
                for tp, chain in chains.items():
                    if step < len(chain):
                        chain[step].builder.close()  # complete: sent at once (open, it waits `linger_ms`)
                        future = await self.producer.send_batch(chain[step].builder, tp[0], partition=tp[1])
                        sent.append((tp, chain[step].records, future))
            except Exception:  # the batches already handed over are awaited all the same
                await asyncio.gather(*(future for _, _, future in sent), return_exceptions=True)
                raise
            results = await asyncio.gather(*(future for _, _, future in sent), return_exceptions=True)
            for (tp, records, _), result in zip(sent, results, strict=True):
                if isinstance(result, BaseException):
                    raise result
                acks.append((tp[0], tp[1], result.offset, result.offset + records - 1))
        return acks


class _Batch:
    """A record batch being filled for one partition."""

    HEADERS = [("content-type", b"application/cloudevents+json")]

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.records = 0

    def add(self, key: bytes, value: bytes) -> bool:
        """Append a record; False when the batch is full."""
        if self.builder.append(timestamp=None, key=key, value=value, headers=self.HEADERS) is None:
            return False
        self.records += 1
        return True


def relay_lock_path(settings: Settings) -> Path | None:
    """For a SQLite file database, the lock file beside it that the relays of all processes share."""
    url = settings.database_url
    if not is_sqlite(url) or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return None if not path or path == ":memory:" else Path(path + ".relay-lock")


class _FileLock:
    """A non-blocking exclusive lock on a file (fcntl); `with` yields whether it was taken."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def __exit__(self, *_: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


RELAY_STAGE = stage("relay")
_PARTITIONER = DefaultPartitioner()  # the producer's own: murmur2 of the key over all partitions
NOTIFY_CHANNEL = "leadrouter_outbox"  # notified at commit by transactions that added events


LEADER_LOCK_KEY = 746_215_003
HANDOVER_CHANNEL = "leadrouter_relay_handover"  # a standby with a rank asks the leader to hand over (payload: it)
RANK_DEFAULT, RANK_CHOSEN = 1, 2  # see RelayLeadership.rank
STANDBY_CHECK_S = 1.0
LEADER_DEFER_S = 3.0


_leading = False  # this process's relay publishes the database's events (set by RelayLeadership)


def wake_channel() -> str | None:
    """For events committed outside a session (one autocommit statement on PostgreSQL): the channel that
    statement notifies to wake the leading relay of another process, None when this process's relay leads
    (then `OUTBOX_COMMITTED.set()` after it, as a session's commit does; see `_tell_the_leader`)."""
    return None if _leading else NOTIFY_CHANNEL


@sa_event.listens_for(Session, "before_commit", insert=True)  # before the staged rows' statement takes the NOTIFY
def _tell_the_leader(session: Session) -> None:
    """PostgreSQL: a transaction that added events wakes the leading relay of another process with one
    `NOTIFY`, delivered when it commits (never for a rollback), sent with the statement that writes the
    transaction's staged rows (`shared.db.notify_at_commit`). The leader's own commits wake it in-process
    and notify nothing: notifying commits take a lock that serializes them, so only the other processes'
    commits (intake's group commits, the monitor's) pay for it."""
    if _leading or not OUTBOX_COMMITTED.marked(session):
        return
    if session.get_bind().dialect.name == "postgresql":
        notify_at_commit(session, NOTIFY_CHANNEL)


class RelayLeadership:
    """PostgreSQL: one relay per database publishes, the leader; the others stand by. The leader holds a
    session advisory lock on a connection of its own and `LISTEN`s on it for `leadrouter_outbox` (sent by
    every other process's transactions that added events, when they commit), so it wakes at once for events
    written anywhere, and no other relay wakes for them. A standby tries for the lock every second. A process
    without a rank first waits `defer_s`, so a ranked one (`LEADROUTER_RELAY_PREFERRED=true`, else the SLA
    monitor), off the path from webhook to offer, becomes the leader when it runs; a ranked standby asks for the
    lead every second on `leadrouter_relay_handover` with its rank, and a leader it outranks hands over. When
    the leader's process or connection dies, the lock is freed and a standby takes over (events wait that long at
    most, none is lost). Reconnects when its connection drops."""

    def __init__(self, url: str, *, defer_s: float = 0.0, rank: int = 0) -> None:
        self.dsn = asyncpg_dsn(url)
        self.defer_s = defer_s
        # A standby that outranks nobody waits; one with a rank asks the leader to hand over, and a leader hands
        # over to a standby that outranks it (RANK_CHOSEN: LEADROUTER_RELAY_PREFERRED=true; RANK_DEFAULT: the
        # monitor with it unset; 0: the others).
        self.rank = rank
        self.is_leader = asyncio.Event()

    async def run(self) -> None:
        import asyncpg  # PostgreSQL only

        await asyncio.sleep(self.defer_s)
        while True:
            try:
                conn = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("outbox relay: cannot reach the database for leadership (%s); retrying in 5s", exc)
                await asyncio.sleep(5)
                continue
            handed_over = False
            try:
                handed_over = await self._lead(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a dropped connection surfaces as several kinds
                log.warning("outbox relay: leadership connection failed (%s); reconnecting", exc)
                await asyncio.sleep(0.5)
            finally:
                self._stand_down()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
            if handed_over:  # give the process that outranks us the time to take the lock
                await asyncio.sleep(LEADER_DEFER_S)

    async def _lead(self, conn: Any) -> bool:
        """Stand by until this connection holds the lock, then lead until the connection is lost (False) or
        until a standby that outranks this one asks for the lead (True)."""
        global _leading
        lost, asked = asyncio.Event(), asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_KEY):
            if self.rank:  # a process we may outrank took the lead while we started: ask for it
                await conn.execute("SELECT pg_notify($1, $2)", HANDOVER_CHANNEL, str(self.rank))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), STANDBY_CHECK_S)
            if lost.is_set():
                raise ConnectionError("connection lost")
        if self.rank < RANK_CHOSEN:
            await conn.add_listener(HANDOVER_CHANNEL, lambda _conn, _pid, _channel, payload: (
                asked.set() if payload.isdigit() and int(payload) > self.rank else None))
        await conn.add_listener(NOTIFY_CHANNEL, lambda *_args: OUTBOX_COMMITTED.set())
        self.is_leader.set()
        _leading = True
        RELAY_LEADING.set(1)
        OUTBOX_COMMITTED.set()  # rows committed before we listened
        log.info("outbox relay: this process publishes the database's events")
        waits = {asyncio.create_task(lost.wait()), asyncio.create_task(asked.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        if lost.is_set():
            log.warning("outbox relay: lost the leadership connection; reconnecting")
            return False
        log.info("outbox relay: handing the publishing over to a process that outranks this one")
        self._stand_down()
        await conn.fetchval("SELECT pg_advisory_unlock($1)", LEADER_LOCK_KEY)
        return True

    def _stand_down(self) -> None:
        global _leading
        self.is_leader.clear()
        _leading = False
        RELAY_LEADING.set(0)


async def start_relay(state: Any, settings: Settings, group: TaskGroup, name: str, *,
                      rank: int = RANK_DEFAULT) -> OutboxRelay:
    """Start a producer (retrying until the broker answers) and this process's relay, plus the hourly
    purge of published rows past their retention; sets `state.producer` and `state.relay`. `rank`: this
    relay's claim to lead (PostgreSQL, see `RelayLeadership`), before `LEADROUTER_RELAY_PREFERRED`."""
    if settings.relay_preferred is not None:
        rank = RANK_CHOSEN if settings.relay_preferred else 0
    producer = make_producer(settings)
    await retry_forever("starting the producer", producer.start)
    state.producer = producer
    relay = OutboxRelay(state.sessions, producer, batch_size=settings.relay_batch_size,
                        poll_interval_s=settings.relay_poll_interval_s, lock_path=relay_lock_path(settings),
                        watch=LogWatch(settings), replay_margin_s=settings.replay_margin_s)
    relay.ensure_topics = lambda: ensure_topics(settings)
    if not is_sqlite(settings.database_url):
        relay.leadership = RelayLeadership(settings.database_url, defer_s=LEADER_DEFER_S if rank == 0 else 0.0,
                                           rank=rank)
        group.start(f"{name}-leadership", relay.leadership.run())
    state.relay = relay
    group.start(name, relay.run())
    group.start(f"{name}-retention", every(3600, "purging published events and processed event ids",
                                           lambda: purge_old(state.sessions), first_after_s=60))
    return relay


RETENTION = timedelta(days=7)


async def purge_old(sessions: async_sessionmaker[AsyncSession], retention: timedelta = RETENTION) -> tuple[int, int]:
    """Delete published outbox rows and consumers' processed event ids older than `retention` (7 days: past
    any redelivery or replay, so an id is remembered as long as its event can come back). Unsent rows are
    never touched. Returns (outbox rows, processed ids) deleted."""
    cutoff = utcnow() - retention
    sent = await delete_in_batches(sessions, OutboxMessage, OutboxMessage.sent_at.is_not(None),
                                   OutboxMessage.sent_at < cutoff)
    return sent, await delete_in_batches(sessions, ProcessedEvent, ProcessedEvent.processed_at < cutoff)
