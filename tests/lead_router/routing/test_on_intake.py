"""Routing on intake (routing/eager.py): the process that stored a lead routes it right after the commit,
without waiting for its `lead.received` event; the event path still routes whatever it left."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI
from sqlalchemy import text

from services.lead_router.routing import eager
from services.lead_router.routing.eager import IntakeRouter
from services.lead_router.routing.repository import ROUTING_LOCK_KEY
from services.lead_router.routing.service import route_leads
from shared.config import Settings
from shared.db import create_engine, session_factory
from shared.models import Lead, LeadOffer, OutboxMessage
from shared.outbox import NOTIFY_CHANNEL
from shared.wakeup import OUTBOX_COMMITTED
from tests.fixtures.builders import make_partner, post_lead, route_waiting, rows
from tests.fixtures.receiver import receiving

Headers = dict[str, str]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The in-process API's settings (tests/conftest.py) with routing on intake, and a local partner webhook."""
    return settings.model_copy(update={"route_on_intake": True, "webhook_allow_private": True})


async def settled(client: httpx.AsyncClient, admin: Headers, lead_ids: list[str],
                  timeout_s: float = 10.0) -> dict[str, str]:
    """Each lead's status once none is `received` any more (or when the time is up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        statuses = {i: (await client.get(f"/v1/leads/{i}", headers=admin)).json()["status"] for i in lead_ids}
        if "received" not in statuses.values() or loop.time() > deadline:
            return statuses
        await asyncio.sleep(0.02)


async def test_a_posted_lead_is_offered_with_no_router_running(client: httpx.AsyncClient, admin: Headers,
                                                             app: FastAPI) -> None:
    await make_partner(client, admin, "bluepeak")
    response = await post_lead(client)
    assert response.status_code == 202 and response.json()["status"] == "received"  # the contract's answer
    lead_id = response.json()["lead_id"]
    assert await settled(client, admin, [lead_id]) == {lead_id: "offered"}
    lead = (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()
    assert lead["partner_id"] == "bluepeak"
    events = [m.type for m in await rows(app, OutboxMessage, OutboxMessage.key == lead_id, order_by=OutboxMessage.id)]
    assert events == ["leadrouter.lead.received", "leadrouter.lead.routed"]  # both published, in order
    assert await route_waiting(app) == 0  # nothing left for the event path


async def test_the_partner_is_told_by_the_process_that_offered(client: httpx.AsyncClient, admin: Headers) -> None:
    """No router worker runs here: the API process that routed the lead also sends the notification."""
    got: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def handle(request: web.Request) -> web.Response:
        await got.put(json.loads(await request.read()))
        return web.Response(status=204)

    async with receiving(handle) as url:
        await make_partner(client, admin, "bluepeak", webhook_url=url)
        assert (await client.post("/v1/partners/bluepeak/webhook-secret", headers=admin)).status_code in (200, 201)
        lead_id = (await post_lead(client)).json()["lead_id"]
        event = await asyncio.wait_for(got.get(), 10)
    assert (event["type"], event["subject"]) == ("leadrouter.lead.offered", lead_id)


async def test_concurrent_leads_share_the_strategy_state(client: httpx.AsyncClient, admin: Headers,
                                                         app: FastAPI) -> None:
    for partner in ("p1", "p2"):
        await make_partner(client, admin, partner)
    responses = await asyncio.gather(*(post_lead(client, external_id=f"x-{i}", email=f"buyer{i}@example.com")
                                       for i in range(20)))
    ids = [r.json()["lead_id"] for r in responses]
    assert set((await settled(client, admin, ids)).values()) == {"offered"}
    offers = await rows(app, LeadOffer)
    assert len(offers) == 20 and len({o.lead_id for o in offers}) == 20  # one offer each
    assert Counter(o.partner_id for o in offers) == {"p1": 10, "p2": 10}  # round robin across batches


async def test_a_lead_below_the_bar_goes_to_nurture_on_intake(client: httpx.AsyncClient, admin: Headers) -> None:
    await make_partner(client, admin, "bluepeak")
    rules = {"qualification": {"min_score": 50}, "rules": [{"name": "all", "strategy": "round_robin"}]}
    assert (await client.put("/v1/routing/rules", json=rules, headers=admin)).status_code == 200
    lead_id = (await post_lead(client, score=10)).json()["lead_id"]
    assert await settled(client, admin, [lead_id]) == {lead_id: "nurturing"}


async def test_leads_beyond_the_pending_bound_are_left_to_the_event_path(client: httpx.AsyncClient,
                                                                         admin: Headers, app: FastAPI) -> None:
    await make_partner(client, admin, "bluepeak")
    app.state.intake_router.max_pending = 0  # this process routes nothing more: a burst beyond its bound
    ids = [(await post_lead(client, external_id=f"b-{i}", email=f"b{i}@example.com")).json()["lead_id"]
           for i in range(3)]
    assert app.state.intake_router.left == 3
    await asyncio.sleep(0.1)
    assert {lead.status for lead in await rows(app, Lead)} == {"received"}
    assert await route_waiting(app) == 3  # what the router does on their lead.received events
    assert set((await settled(client, admin, ids)).values()) == {"offered"}


async def test_a_bounded_router_routes_what_it_kept(client: httpx.AsyncClient, admin: Headers,
                                                     app: FastAPI) -> None:
    await make_partner(client, admin, "bluepeak")
    app.state.intake_router.max_pending = 0
    ids = [(await post_lead(client, external_id=f"k-{i}", email=f"k{i}@example.com")).json()["lead_id"]
           for i in range(4)]
    router = IntakeRouter(app.state.sessions, app.state.settings, max_pending=2, max_batch=1)
    router.submit(ids)
    assert (router.pending, router.left) == (ids[:2], 2)
    task = asyncio.create_task(router.run())
    try:
        statuses = await settled(client, admin, ids[:2])
    finally:
        task.cancel()
    assert set(statuses.values()) == {"offered"} and router.routed == 2
    assert {lead.lead_id for lead in await rows(app, Lead, Lead.status == "received")} == set(ids[2:])


async def test_an_offered_lead_event_does_not_wait_for_the_routing_lock(pg_url: str) -> None:
    """The router consuming `lead.received` for a lead routed on intake skips it with one read; it used to
    queue for the routing lock behind every routing transaction first."""
    engine = create_engine(pg_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            await session.execute(text("DELETE FROM leads WHERE external_id = 'lock-skip'"))
            session.add(Lead(lead_id="00000000-0000-4000-8000-00000000beef", source="generic",
                             external_id="lock-skip", status="offered", contact={}, company={}))
        async with engine.connect() as holder, holder.begin():
            await holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ROUTING_LOCK_KEY})
            async with sessions() as session, session.begin():
                decisions = await asyncio.wait_for(route_leads(
                    session, ["00000000-0000-4000-8000-00000000beef"], settings=Settings(database_url=pg_url)), 5)
        assert decisions == []
    finally:
        async with sessions() as session, session.begin():
            await session.execute(text("DELETE FROM leads WHERE external_id = 'lock-skip'"))
        await engine.dispose()



@asynccontextmanager
async def relay_wakes(db_url: str) -> AsyncIterator[list[str]]:
    """What would wake a leading relay in another process: the PostgreSQL notifications heard meanwhile
    (SQLite has none: its relays poll, and are woken by their own process's commits)."""
    heard: list[str] = []
    if not db_url.startswith("postgresql"):
        yield heard
        return
    conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
    await conn.add_listener(NOTIFY_CHANNEL, lambda *args: heard.append(args[1]))
    try:
        yield heard
        await asyncio.sleep(0.3)  # notifications of the last commits arrive
    finally:
        await conn.close()


async def test_intake_leaves_the_relay_wake_to_the_routing_commit(client: httpx.AsyncClient, admin: Headers,
                                                                   app: FastAPI, db_url: str) -> None:
    """A lead's `lead.received` and `lead.routed` are published by one relay round: the intake commit that
    the routing commit follows at once does not wake the relay by itself (it used to: a round, a NOTIFY,
    a produce request more per lead)."""
    await make_partner(client, admin, "bluepeak")
    async with relay_wakes(db_url) as heard:
        lead_id = (await post_lead(client)).json()["lead_id"]
        assert await settled(client, admin, [lead_id]) == {lead_id: "offered"}
        await asyncio.sleep(0.3)
    if db_url.startswith("postgresql"):
        assert len(heard) == 1  # the routing commit's, not the intake commit's as well
    sent = [m.type for m in await rows(app, OutboxMessage, OutboxMessage.key == lead_id, order_by=OutboxMessage.id)]
    assert sent == ["leadrouter.lead.received", "leadrouter.lead.routed"]


async def test_a_failed_routing_still_wakes_the_relay_for_intake_events(client: httpx.AsyncClient, admin: Headers,
                                                                        app: FastAPI, db_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Intake left the wake to the routing transaction; when that fails, the relay is woken all the same
    (the lead's `lead.received` goes out at once and routes it), not at its next poll."""
    await make_partner(client, admin, "bluepeak")

    async def broken(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("routing failed")

    monkeypatch.setattr(eager, "route_leads", broken)
    OUTBOX_COMMITTED.event = asyncio.Event()  # as a relay of this process waits on it
    try:
        async with relay_wakes(db_url) as heard:
            lead_id = (await post_lead(client)).json()["lead_id"]
            await asyncio.wait_for(OUTBOX_COMMITTED.event.wait(), 5)
        if db_url.startswith("postgresql"):
            assert len(heard) == 1
        assert app.state.intake_router.routed == 0
        assert (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()["status"] == "received"
    finally:
        OUTBOX_COMMITTED.event = None


async def test_a_lead_the_router_has_no_room_for_wakes_the_relay_at_intake(client: httpx.AsyncClient,
                                                                          admin: Headers, app: FastAPI,
                                                                          db_url: str) -> None:
    await make_partner(client, admin, "bluepeak")
    app.state.intake_router.max_pending = 0  # no routing follows: the intake commit must wake the relay
    async with relay_wakes(db_url) as heard:
        await post_lead(client)
        await asyncio.sleep(0.1)
    if db_url.startswith("postgresql"):
        assert len(heard) == 1
