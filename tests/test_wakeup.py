"""A task waiting for staged work wakes when the transaction that staged it commits, not on a rollback."""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI
from sqlalchemy import text

from shared.outbox import listen_for_outbox
from shared.wakeup import OUTBOX_COMMITTED, CommitSignal


async def test_a_commit_wakes_the_waiting_task_and_a_rollback_does_not(app: FastAPI) -> None:
    signal = CommitSignal("test-work")
    waiting = asyncio.create_task(signal.wait(5))
    await asyncio.sleep(0.05)
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


async def test_postgres_commits_in_any_process_wake_the_relay(app: FastAPI, db_url: str) -> None:
    """A commit that adds outbox rows notifies (trigger + LISTEN): the relay of every process wakes at once,
    also for rows written by another process (here: a plain SQL insert that marks no session)."""
    if not db_url.startswith("postgresql"):
        return  # SQLite has no notifications: its relays poll and are woken by their own process's commits
    OUTBOX_COMMITTED.event = asyncio.Event()
    listener = asyncio.create_task(listen_for_outbox(db_url))
    try:
        await asyncio.wait_for(OUTBOX_COMMITTED.event.wait(), 5)  # set once listening (rows may be waiting)
        OUTBOX_COMMITTED.event.clear()
        async with app.state.sessions() as session, session.begin():
            await session.execute(text("SELECT 1"))  # a transaction without outbox rows notifies nothing
        await asyncio.sleep(0.3)
        assert not OUTBOX_COMMITTED.event.is_set()
        began = time.monotonic()
        async with app.state.sessions() as session, session.begin():
            await session.execute(text(
                "INSERT INTO outbox (event_id, topic, key, type, payload, created_at, attempts) "
                "VALUES ('e-1', 't', 'k', 'leadrouter.x', '\\x7b7d', now(), 0)"))
        await asyncio.wait_for(OUTBOX_COMMITTED.event.wait(), 2)
        assert time.monotonic() - began < 1
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
