"""The deadline scheduler in real time: a breach within a second of its due time, woken by new clocks,
and on start the clocks already overdue."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from fastapi import FastAPI

from services.sla_monitor.scheduler import DeadlineScheduler
from shared.models import SlaAlert, SlaClock, utcnow
from tests.fixtures.builders import count_rows, rows
from tests.sla_monitor.conftest import Feed

POLICY = {"accept_within": "PT1S", "first_touch_within": "PT1H", "report_back_every": "PT1H", "clock": "calendar",
          "on_accept_breach": "alert"}


async def wait_for_alerts(app: FastAPI, n: int, timeout_s: float = 5.0) -> list[SlaAlert]:
    for _ in range(int(timeout_s / 0.02)):
        found = await rows(app, SlaAlert)
        if len(found) >= n:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {n} alerts, found {len(await rows(app, SlaAlert))}")


async def test_scheduler_flags_within_a_second_and_survives_a_restart(monitor_app: FastAPI,
                                                                      monitor: httpx.AsyncClient,
                                                                      admin: dict[str, str], feed: Feed) -> None:
    assert (await monitor.put("/v1/sla/policies/default", json=POLICY, headers=admin)).status_code == 201
    sessions, settings = monitor_app.state.sessions, monitor_app.state.settings
    # Overdue before the scheduler starts (as after a crash): flagged as soon as it loads.
    await feed("lead.routed", "old", utcnow() - timedelta(minutes=5), partner_id="acme")

    scheduler = DeadlineScheduler(sessions, settings)
    monitor_app.state.hub.on_due = scheduler.push
    task = asyncio.create_task(scheduler.run())
    try:
        [old] = await wait_for_alerts(monitor_app, 1)
        assert old.lead_id == "old"
        # A clock opened while the scheduler sleeps (max sleep 30 s) wakes it through the hub.
        opened = utcnow()
        await feed("lead.routed", "new", opened, partner_id="acme")
        alerts = await wait_for_alerts(monitor_app, 2)
        [new] = [a for a in alerts if a.lead_id == "new"]
        assert new.due_at == opened + timedelta(seconds=1)
        assert timedelta(0) <= new.breached_at - new.due_at < timedelta(seconds=1)
        await asyncio.sleep(0.3)
        assert await count_rows(monitor_app, SlaAlert) == 2
    finally:
        task.cancel()
        monitor_app.state.hub.on_due = None

    # A restarted scheduler loads only what is still armed and raises nothing twice.
    again = DeadlineScheduler(sessions, settings)
    await again.load()
    assert again.heap == []
    assert await count_rows(monitor_app, SlaClock, SlaClock.armed.is_(True)) == 0


async def test_resync_finds_deadlines_nobody_pushed(monitor_app: FastAPI, monitor: httpx.AsyncClient,
                                                    admin: dict[str, str], feed: Feed) -> None:
    """A clock armed elsewhere (another monitor instance) is found by the periodic range read."""
    assert (await monitor.put("/v1/sla/policies/default", json=POLICY, headers=admin)).status_code == 201
    settings = monitor_app.state.settings.model_copy(update={"sla_scheduler_max_sleep_s": 0.3})
    scheduler = DeadlineScheduler(monitor_app.state.sessions, settings)
    task = asyncio.create_task(scheduler.run())
    try:
        await asyncio.sleep(0.1)
        await feed("lead.routed", "elsewhere", utcnow(), partner_id="acme")  # hub.on_due is not this scheduler
        [alert] = await wait_for_alerts(monitor_app, 1)
        assert alert.breached_at - alert.due_at < timedelta(seconds=1)
    finally:
        task.cancel()
