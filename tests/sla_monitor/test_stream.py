"""`GET /v1/alerts/stream`: Server-Sent Events for new and changed alerts, fed after each commit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from fastapi import FastAPI

from services.sla_monitor import tracker
from services.sla_monitor.repository import SlaRepository
from services.sla_monitor.scheduler import flag_due
from tests.sla_monitor.conftest import Feed, t

LEAD = "11111111-1111-1111-1111-111111111111"


def parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")
        if fields.get("event") == "alert":
            events.append({"id": fields["id"], **json.loads(fields["data"])})
    return events


async def read_stream(client: httpx.AsyncClient, admin: dict[str, str], max_events: int) -> tuple[str, str]:
    async with client.stream("GET", "/v1/alerts/stream", params={"max_events": max_events}, headers=admin) as resp:
        assert resp.status_code == 200
        body = b"".join([chunk async for chunk in resp.aiter_bytes()])
        return resp.headers["content-type"], body.decode()


async def until_subscribed(app: FastAPI, n: int = 1) -> None:
    for _ in range(200):
        if len(app.state.hub.broadcaster.subscribers) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the stream never subscribed")


async def test_stream_sends_new_and_changed_alerts(monitor_app: FastAPI, monitor: httpx.AsyncClient,
                                                   admin: dict[str, str], feed: Feed) -> None:
    await feed("lead.routed", LEAD, t(17, 10), partner_id="acme")
    reader = asyncio.create_task(read_stream(monitor, admin, max_events=2))
    await until_subscribed(monitor_app)
    [alert] = await flag_due(monitor_app.state.sessions, monitor_app.state.settings, t(17, 15))
    ack = await monitor.post(f"/v1/alerts/{alert.alert_id}/ack", json={"by": "ops"}, headers=admin)
    assert ack.status_code == 200

    content_type, text = await asyncio.wait_for(reader, timeout=10)
    assert content_type.startswith("text/event-stream")
    events = parse_sse(text)
    assert [(e["id"], e["alert_id"], e["kind"], e["status"]) for e in events] == [
        (alert.alert_id, alert.alert_id, "accept_overdue", "open"),
        (alert.alert_id, alert.alert_id, "accept_overdue", "acknowledged")]


async def test_stream_keeps_alive_and_needs_the_admin_token(monitor_app: FastAPI, monitor: httpx.AsyncClient,
                                                            admin: dict[str, str], feed: Feed) -> None:
    assert (await monitor.get("/v1/alerts/stream")).status_code == 401
    reader = asyncio.create_task(read_stream(monitor, admin, max_events=1))
    await until_subscribed(monitor_app)
    await asyncio.sleep(0.5)  # keep-alive every 0.2 s in these tests
    await feed("lead.routed", LEAD, t(17, 10), partner_id="acme")
    await flag_due(monitor_app.state.sessions, monitor_app.state.settings, t(17, 15))
    _, text = await asyncio.wait_for(reader, timeout=10)
    assert text.count(": keep-alive") >= 1
    assert len(parse_sse(text)) == 1


async def test_nothing_is_streamed_for_a_rolled_back_change(monitor_app: FastAPI, monitor: httpx.AsyncClient,
                                                            admin: dict[str, str], feed: Feed) -> None:
    await feed("lead.routed", LEAD, t(17, 10), partner_id="acme")
    reader = asyncio.create_task(read_stream(monitor, admin, max_events=1))
    await until_subscribed(monitor_app)
    [clock_id] = await _armed(monitor_app)
    async with monitor_app.state.sessions() as session:
        await session.begin()
        assert await tracker.breach(session, monitor_app.state.settings, clock_id, t(17, 15)) is not None
        async with session.begin_nested():  # a savepoint released is not a commit: nothing is handed over yet
            pass
        await session.rollback()
    await asyncio.sleep(0.3)
    assert not reader.done()
    await flag_due(monitor_app.state.sessions, monitor_app.state.settings, t(17, 16))
    _, text = await asyncio.wait_for(reader, timeout=10)
    [event] = parse_sse(text)
    assert event["breached_at"] == "2026-11-17T16:00:00Z"


async def _armed(app: FastAPI) -> list[str]:
    async with app.state.sessions() as session:
        return [clock_id for _, clock_id in await SlaRepository(session).armed()]
