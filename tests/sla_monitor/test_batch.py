"""Flagging due clocks in batches: one transaction for many clocks, each deadline still flagged exactly once,
a conflict with another instance costing nothing but that clock, rows held elsewhere skipped and retried."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from services.sla_monitor.scheduler import FLAG_BATCH, DeadlineScheduler, flag_batch, flag_clocks, flag_due
from shared.events import CloudEvent
from shared.models import OutboxMessage, SlaAlert, SlaClock, utcnow
from tests.fixtures.builders import count_rows, rows, sql_statements
from tests.sla_monitor.conftest import t

KINDS = ("accept", "first_touch", "report_back")


async def make_clocks(app: FastAPI, n: int, due_at: datetime, **overrides: Any) -> list[SlaClock]:
    """`n` open, armed clocks due at `due_at` (kinds in turn; every fourth accept clock recalls)."""
    clocks = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        fields: dict[str, Any] = {
            "clock_id": str(uuid.uuid4()), "lead_id": str(uuid.uuid4()), "partner_id": f"p{i % 7}", "kind": kind,
            "status": "open", "policy": "default", "clock": "calendar", "duration": "PT1H",
            "action": "recall" if kind == "accept" and i % 4 == 0 else "alert",
            "started_at": due_at - timedelta(hours=1), "due_at": due_at, "armed": True, "period": 1,
            "breached": False, "opened_by": str(uuid.uuid4()),
            "updated_at": due_at - timedelta(hours=1)}
        clocks.append(SlaClock(**(fields | overrides)))
    async with app.state.sessions() as session, session.begin():
        session.add_all(clocks)
    return clocks


async def breached_events(app: FastAPI) -> list[CloudEvent]:
    return [CloudEvent.parse(m.payload) for m in await rows(app, OutboxMessage, order_by=OutboxMessage.id)
            if CloudEvent.parse(m.payload).name == "sla.breached"]


async def test_a_batch_of_300_due_clocks_is_flagged_once_each(monitor_app: FastAPI) -> None:
    sessions, settings = monitor_app.state.sessions, monitor_app.state.settings
    clocks = await make_clocks(monitor_app, 300, t(17, 10))
    with sql_statements(monitor_app) as statements:
        flagged = await flag_due(sessions, settings, t(17, 10, 30))
    assert len(flagged) == 300
    inserts = [s for s in statements if s.upper().startswith("INSERT INTO SLA_ALERTS")]
    assert len(inserts) < 300 // FLAG_BATCH * 3  # bulk inserts, not one per clock
    assert {a.clock_id for a in flagged} == {c.clock_id for c in clocks}
    assert {a.breached_at for a in flagged} == {t(17, 10, 30)}
    assert await count_rows(monitor_app, SlaAlert) == 300

    events = await breached_events(monitor_app)
    assert sorted(e.data["alert_id"] for e in events) == sorted(a.alert_id for a in flagged)
    recall = {c.lead_id for c in clocks if c.action == "recall"}
    assert recall and {e.subject for e in events if e.data["action"] == "recall"} == recall
    by_kind: dict[str, set[tuple[bool, bool, int, datetime | None]]] = {}
    for clock in await rows(monitor_app, SlaClock):
        by_kind.setdefault(clock.kind, set()).add((clock.armed, clock.breached, clock.period, clock.breached_at))
    assert by_kind == {"accept": {(False, True, 1, t(17, 10, 30))}, "first_touch": {(False, True, 1, t(17, 10, 30))},
                       "report_back": {(True, True, 2, t(17, 10, 30))}}  # re-armed for the next period
    [next_due] = {c.due_at for c in await rows(monitor_app, SlaClock, SlaClock.kind == "report_back")}
    assert next_due == t(17, 11)

    assert await flag_due(sessions, settings, t(17, 10, 30)) == []
    assert await count_rows(monitor_app, SlaAlert) == 300
    assert len(await breached_events(monitor_app)) == 300


async def test_a_deadline_flagged_concurrently_does_not_break_the_batch(monitor_app: FastAPI) -> None:
    """Another instance flagged one of the clocks first (its alert exists): the bulk insert meets the unique
    (clock_id, period); the batch falls back to one clock at a time and flags all the others."""
    sessions, settings = monitor_app.state.sessions, monitor_app.state.settings
    clocks = await make_clocks(monitor_app, 30, t(17, 10), kind="accept", action="alert")
    taken = clocks[7]
    async with sessions() as session, session.begin():
        session.add(SlaAlert(alert_id=str(uuid.uuid4()), clock_id=taken.clock_id, period=1, lead_id=taken.lead_id,
                             partner_id=taken.partner_id, kind="accept_overdue", action="alert", status="open",
                             due_at=taken.due_at, breached_at=t(17, 10), updated_at=t(17, 10)))

    flagged = await flag_due(sessions, settings, t(17, 11))
    assert sorted(a.clock_id for a in flagged) == sorted(c.clock_id for c in clocks if c is not taken)
    assert await count_rows(monitor_app, SlaAlert) == 30
    assert await count_rows(monitor_app, SlaAlert, SlaAlert.clock_id == taken.clock_id) == 1
    assert len(await breached_events(monitor_app)) == 29
    assert await count_rows(monitor_app, SlaClock, SlaClock.armed.is_(True)) == 1  # left as the other one had it

    assert await flag_due(sessions, settings, t(17, 11)) == []
    assert await count_rows(monitor_app, SlaAlert) == 30


async def test_the_batch_stamps_the_time_its_transaction_runs(monitor_app: FastAPI) -> None:
    sessions, settings = monitor_app.state.sessions, monitor_app.state.settings
    clocks = await make_clocks(monitor_app, 5, utcnow() - timedelta(minutes=1))
    before = utcnow()
    flagged = await flag_clocks(sessions, settings, [c.clock_id for c in clocks])
    after = utcnow()
    assert len(flagged) == 5
    [stamp] = {a.breached_at for a in flagged}
    assert before <= stamp <= after
    assert {c.breached_at for c in await rows(monitor_app, SlaClock)} == {stamp}


async def test_a_clock_held_by_another_transaction_is_skipped_and_retried(monitor_app: FastAPI,
                                                                          db_url: str) -> None:
    """On PostgreSQL the batch does not wait for a row another transaction holds; the scheduler tries that
    clock again shortly and flags it once the row is free."""
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL only")
    sessions, settings = monitor_app.state.sessions, monitor_app.state.settings
    clocks = await make_clocks(monitor_app, 10, utcnow() - timedelta(seconds=5), kind="accept", action="alert")
    held = clocks[3]
    async with sessions() as holder:
        await holder.execute(select(SlaClock).where(SlaClock.clock_id == held.clock_id).with_for_update())
        result = await asyncio.wait_for(flag_batch(sessions, settings, [c.clock_id for c in clocks]), timeout=5)
        assert result.busy == [held.clock_id]
        assert len(result.alerts) == 9

        scheduler = DeadlineScheduler(sessions, settings)
        task = asyncio.create_task(scheduler.run())
        try:
            await asyncio.sleep(0.3)  # it keeps retrying the held clock meanwhile
            assert await count_rows(monitor_app, SlaAlert) == 9
            await holder.rollback()
            for _ in range(100):
                if await count_rows(monitor_app, SlaAlert) == 10:
                    break
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
    assert await count_rows(monitor_app, SlaAlert, SlaAlert.clock_id == held.clock_id) == 1
    assert await count_rows(monitor_app, SlaAlert) == 10
    assert scheduler.flagged == 1
