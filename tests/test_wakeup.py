"""A task waiting for staged work wakes when the transaction that staged it commits, not on a rollback."""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI
from sqlalchemy import text

from shared.wakeup import CommitSignal


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
