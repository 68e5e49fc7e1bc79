"""Tables that would grow for ever are trimmed, and the periodic task doing it survives its failures."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import FastAPI

from shared.models import OutboxMessage, ProcessedEvent, utcnow
from shared.outbox import purge_old
from shared.tasks import every
from tests.fixtures.builders import rows


async def test_old_published_rows_and_processed_ids_go(app: FastAPI) -> None:
    now = utcnow()
    old, recent = now - timedelta(days=8), now - timedelta(days=6)
    async with app.state.sessions() as session, session.begin():
        for i, (created, sent) in enumerate([(old, old), (old, None), (recent, recent), (old, recent)]):
            session.add(OutboxMessage(event_id=f"e{i}", topic="t", key="k", type="x", payload=b"{}",
                                      created_at=created, sent_at=sent))
        session.add_all([ProcessedEvent(consumer="c", event_id="old", processed_at=old),
                         ProcessedEvent(consumer="c", event_id="new", processed_at=recent)])
    assert await purge_old(app.state.sessions) == (1, 1)
    assert sorted(r.event_id for r in await rows(app, OutboxMessage)) == ["e1", "e2", "e3"]  # e1: never sent
    assert [r.event_id for r in await rows(app, ProcessedEvent)] == ["new"]


async def test_a_periodic_task_outlives_its_failures() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database went away")

    task = asyncio.create_task(every(0.01, "flaky work", flaky, first_after_s=0))
    try:
        for _ in range(200):
            if calls >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert calls >= 3 and not task.done() or task.cancelled()
