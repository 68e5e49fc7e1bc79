"""A task waiting for staged work wakes when the transaction that staged it commits, not on a rollback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared import outbox
from shared.models import ProcessedEvent
from shared.outbox import NOTIFY_CHANNEL, RelayLeadership, add_event
from shared.wakeup import OUTBOX_COMMITTED, CommitSignal


async def armed(name: str) -> tuple[CommitSignal, asyncio.Task[None]]:
    """A signal and a task already waiting on it (for at most 5 s)."""
    signal = CommitSignal(name)
    waiting = asyncio.create_task(signal.wait(5))
    await asyncio.sleep(0.05)
    return signal, waiting


async def test_a_commit_wakes_the_waiting_task_and_a_rollback_does_not(app: FastAPI) -> None:
    signal, waiting = await armed("test-work")
    async with app.state.sessions() as session:
        async with session.begin():
            await session.execute(text("SELECT 1"))
            signal.mark(session)
            await session.rollback()
    await asyncio.sleep(0.2)
    assert not waiting.done()  # a rollback staged nothing
    began = time.monotonic()
    async with app.state.sessions() as session, session.begin():
        await session.execute(text("SELECT 1"))
        signal.mark(session)
    await asyncio.wait_for(waiting, 2)
    assert time.monotonic() - began < 1


async def test_a_savepoint_rolled_back_keeps_the_wake_up_for_what_was_staged_before_it(app: FastAPI) -> None:
    """Events staged before a savepoint that rolls back commit with the transaction, and that commit wakes the
    relay (it used to wait for the relay's poll: the savepoint's rollback took the mark back)."""
    signal, waiting = await armed("test-savepoint")
    async with app.state.sessions() as session, session.begin():
        await session.execute(text("SELECT 1"))
        signal.mark(session)
        savepoint = await session.begin_nested()
        await session.execute(text("SELECT 2"))
        await savepoint.rollback()
        assert session.in_transaction()
    await asyncio.wait_for(waiting, 2)
    # The way savepoints fail here: a flush meeting a unique key inside one (it rolls back the flush's own
    # sub-transaction, not a savepoint), caught, and the transaction goes on.
    signal, waiting = await armed("test-savepoint-flush")
    key = f"wake-{time.monotonic_ns()}"
    async with app.state.sessions() as session, session.begin():
        session.add(ProcessedEvent(consumer="wakeup-test", event_id=key))
    async with app.state.sessions() as session, session.begin():
        signal.mark(session)
        with pytest.raises(IntegrityError):
            async with session.begin_nested():
                session.add(ProcessedEvent(consumer="wakeup-test", event_id=key))
                await session.flush()
    await asyncio.wait_for(waiting, 2)


async def test_a_mark_made_in_a_savepoint_that_rolled_back_is_taken_back(app: FastAPI) -> None:
    """The work it announced was undone with the savepoint: the commit wakes nobody for it."""
    signal, waiting = await armed("test-savepoint-only")
    async with app.state.sessions() as session, session.begin():
        savepoint = await session.begin_nested()
        signal.mark(session)
        await savepoint.rollback()
        assert not signal.marked(session)
    await asyncio.sleep(0.2)
    assert not waiting.done()
    waiting.cancel()


async def test_a_savepoint_released_is_not_a_commit(app: FastAPI) -> None:
    """Releasing a savepoint commits nothing: it wakes nobody (the transaction may still roll back), and the
    transaction's own commit still does."""
    signal, waiting = await armed("test-release")
    async with app.state.sessions() as session:
        async with session.begin():
            await session.execute(text("SELECT 1"))
            signal.mark(session)
            async with session.begin_nested():
                await session.execute(text("SELECT 2"))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            await session.rollback()
    await asyncio.sleep(0.2)
    assert not waiting.done()
    async with app.state.sessions() as session, session.begin():
        signal.mark(session)
        async with session.begin_nested():
            await session.execute(text("SELECT 2"))
        assert signal.marked(session)  # still marked for the commit
    await asyncio.wait_for(waiting, 2)


async def test_postgres_commits_with_events_notify_the_leading_relay(app: FastAPI, db_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A transaction that adds events sends one NOTIFY when it commits (none on a rollback, none for a
    transaction without events), which wakes the leading relay in whichever process it runs; the leader's
    own process notifies nothing (its commits wake it in-process)."""
    if not db_url.startswith("postgresql"):
        return  # SQLite has no notifications: its relays poll and are woken by their own process's commits
    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
    await conn.add_listener(NOTIFY_CHANNEL, lambda *args: heard.put_nowait(args[2]))

    async def write(*, commit: bool = True, event: bool = True) -> None:
        async with app.state.sessions() as session:
            async with session.begin():
                await session.execute(text("SELECT 1"))
                if event:
                    add_event(session, topic="t", name="lead.x", source="/test", subject="s", data={})
                if not commit:
                    await session.rollback()

    try:
        await write(event=False)
        await write(commit=False)
        await asyncio.sleep(0.3)
        assert heard.empty()
        await write()
        await asyncio.wait_for(heard.get(), 2)
        monkeypatch.setattr(outbox, "_leading", True)
        await write()
        await asyncio.sleep(0.3)
        assert heard.empty()
    finally:
        await conn.close()


async def test_the_leading_relay_wakes_on_a_notification(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        return
    OUTBOX_COMMITTED.event = asyncio.Event()
    leadership = RelayLeadership(db_url)
    task = asyncio.create_task(leadership.run())
    conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
    try:
        await asyncio.wait_for(leadership.is_leader.wait(), 5)
        OUTBOX_COMMITTED.event.clear()
        began = time.monotonic()
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")  # what another process's commit sends
        await asyncio.wait_for(OUTBOX_COMMITTED.event.wait(), 2)
        assert time.monotonic() - began < 1
    finally:
        await conn.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def leaderships() -> AsyncIterator[Callable[[RelayLeadership], asyncio.Task[None]]]:
    """Start relays' leaderships as tasks (the returned function); all are cancelled when the block ends."""
    tasks: list[asyncio.Task[None]] = []

    def start(leadership: RelayLeadership) -> asyncio.Task[None]:
        tasks.append(asyncio.create_task(leadership.run()))
        return tasks[-1]

    try:
        yield start
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def hands_over(start: Callable[[RelayLeadership], asyncio.Task[None]], leader: RelayLeadership,
                     outranking: RelayLeadership) -> None:
    """`leader` leads; `outranking` starts, is handed the lead, and keeps it once `leader` stands by again."""
    start(leader)
    await asyncio.wait_for(leader.is_leader.wait(), 5)
    start(outranking)
    await asyncio.wait_for(outranking.is_leader.wait(), 5)
    assert not leader.is_leader.is_set()
    await asyncio.sleep(outbox.LEADER_DEFER_S + 1.5)  # the one handing over stands by again; the lead stays
    assert outranking.is_leader.is_set() and not leader.is_leader.is_set()


async def test_one_relay_leads_per_database_and_a_standby_takes_over(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        return  # SQLite: the lock file beside the database picks the publishing relay
    first, second = RelayLeadership(db_url), RelayLeadership(db_url)
    async with leaderships() as start:
        leading = start(first)
        await asyncio.wait_for(first.is_leader.wait(), 5)
        start(second)
        await asyncio.sleep(1.5)
        assert first.is_leader.is_set() and not second.is_leader.is_set()
        leading.cancel()  # the leading process goes away: its connection, and the lock, with it
        await asyncio.gather(leading, return_exceptions=True)
        await asyncio.wait_for(second.is_leader.wait(), 5)


async def test_a_chosen_relay_outranks_the_monitor_and_the_monitor_does_not_take_it_back(db_url: str) -> None:
    """LEADROUTER_RELAY_PREFERRED=true (RANK_CHOSEN) outranks the monitor's default: the monitor hands over, then
    stands by without getting it back; equal ranks keep whoever leads."""
    if not db_url.startswith("postgresql"):
        return
    monitor = RelayLeadership(db_url, rank=outbox.RANK_DEFAULT)
    chosen = RelayLeadership(db_url, rank=outbox.RANK_CHOSEN)
    async with leaderships() as start:
        await hands_over(start, monitor, chosen)  # the monitor asks every second meanwhile: it is outranked
        other = RelayLeadership(db_url, rank=outbox.RANK_CHOSEN)
        start(other)
        await asyncio.sleep(2.5)  # the same rank asks in vain
        assert chosen.is_leader.is_set() and not other.is_leader.is_set()


async def test_a_preferred_relay_starting_later_gets_the_lead_handed_over(db_url: str) -> None:
    """A lead_router process took the lead because the monitor started late: the monitor asks for it and gets
    it, and the lead_router process stands by (it publishes nothing meanwhile)."""
    if not db_url.startswith("postgresql"):
        return
    router, monitor = RelayLeadership(db_url), RelayLeadership(db_url, rank=outbox.RANK_DEFAULT)
    async with leaderships() as start:
        await hands_over(start, router, monitor)
