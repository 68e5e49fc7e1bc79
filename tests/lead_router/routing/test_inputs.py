"""Routing reuses the partners and the rule set it read while `routing_inputs_version` (kept by triggers on
`partners` and `rule_sets`) is unchanged, and sees any change at once, whichever process made it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.lead_router.routing.repository import ROUTING_LOCK_KEY
from shared.db import create_engine, session_factory
from shared.models import Lead, Partner, RoutingInputsVersion
from tests.fixtures.builders import make_partner, post_lead, route_waiting, rows

Headers = dict[str, str]


@pytest.fixture
async def elsewhere(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions of another engine on the same database: another process's writes."""
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


async def version(sessions: async_sessionmaker[AsyncSession]) -> int | None:
    async with sessions() as session:
        return await session.scalar(select(RoutingInputsVersion.version))


async def offered_to(client: httpx.AsyncClient, app: FastAPI, **lead: object) -> str | None:
    lead_id = (await post_lead(client, **lead)).json()["lead_id"]
    await route_waiting(app)
    (routed,) = await rows(app, Lead, Lead.lead_id == lead_id)
    return routed.partner_id


async def test_every_write_of_partners_or_rule_sets_changes_the_version(
        client: httpx.AsyncClient, admin: Headers, elsewhere: async_sessionmaker[AsyncSession]) -> None:
    seen = [await version(elsewhere)]  # None when no write made the row yet (tests before this one may drop it)
    await make_partner(client, admin, "p1")
    seen.append(await version(elsewhere))
    await make_partner(client, admin, "p1", active=False)  # PUT again: an update
    seen.append(await version(elsewhere))
    rules = {"rules": [{"name": "all", "strategy": "round_robin"}]}
    assert (await client.put("/v1/routing/rules", json=rules, headers=admin)).status_code == 200
    seen.append(await version(elsewhere))
    async with elsewhere() as session, session.begin():
        await session.execute(text("DELETE FROM partners WHERE partner_id = 'p1'"))
    seen.append(await version(elsewhere))
    assert None not in seen[1:] and len(set(seen)) == len(seen), seen


async def test_a_partner_changed_by_another_process_is_seen_by_the_next_decision(
        client: httpx.AsyncClient, admin: Headers, app: FastAPI, elsewhere: async_sessionmaker[AsyncSession]) -> None:
    await make_partner(client, admin, "p1")
    await make_partner(client, admin, "p2")
    assert await offered_to(client, app) == "p1"  # round robin; the partners are now held for reuse
    async with elsewhere() as session, session.begin():  # not through this process's API
        await session.execute(update(Partner).where(Partner.partner_id == "p2").values(active=False))
    assert [await offered_to(client, app) for _ in range(2)] == ["p1", "p1"]  # p2 is inactive at once
    async with elsewhere() as session, session.begin():
        await session.execute(update(Partner).where(Partner.partner_id == "p2")
                              .values(active=True, territories=[{"country": "DE"}]))
    assert await offered_to(client, app, company={"country": "DE"}) == "p2"  # and its new territory


async def test_unchanged_partners_and_rules_are_not_read_again(client: httpx.AsyncClient, admin: Headers,
                                                                app: FastAPI) -> None:
    await make_partner(client, admin, "p1")
    assert await offered_to(client, app) == "p1"
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert await offered_to(client, app) == "p1"
    finally:
        event.remove(engine, "before_cursor_execute", record)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert reads and not [s for s in reads if "FROM partners" in s or "FROM rule_sets" in s]


async def test_with_no_version_row_routing_reads_everything_each_time(
        client: httpx.AsyncClient, admin: Headers, app: FastAPI, elsewhere: async_sessionmaker[AsyncSession]) -> None:
    await make_partner(client, admin, "p1")
    await make_partner(client, admin, "p2")
    async with elsewhere() as session, session.begin():
        await session.execute(text("DELETE FROM routing_inputs_version"))
    assert await offered_to(client, app) == "p1"
    async with elsewhere() as session, session.begin():  # as if the version were lost with the row
        await session.execute(text("DELETE FROM routing_inputs_version"))
        await session.execute(update(Partner).where(Partner.partner_id == "p2").values(active=False))
        await session.execute(text("DELETE FROM routing_inputs_version"))
    assert await version(elsewhere) is None
    assert await offered_to(client, app) == "p1"  # p2's change is seen: nothing was reused
    await make_partner(client, admin, "p3")
    assert await version(elsewhere) is not None  # the next change writes the row again


async def test_a_partner_changed_while_routing_waits_for_the_lock_is_seen(
        client: httpx.AsyncClient, admin: Headers, app: FastAPI, db_url: str,
        elsewhere: async_sessionmaker[AsyncSession]) -> None:
    """PostgreSQL: a statement's snapshot is taken when it starts, so a version read by the statement that waits
    for the routing lock would predate a change committed during the wait (and reuse what that change made
    stale). It is read after the lock is granted."""
    if not db_url.startswith("postgresql"):
        return  # SQLite routes under the database's write lock, taken before anything is read
    await make_partner(client, admin, "p1")
    await make_partner(client, admin, "p2")
    assert await offered_to(client, app) == "p1"  # inputs held for reuse; round robin goes on to p2 next
    lead_id = (await post_lead(client)).json()["lead_id"]
    engine = create_engine(db_url)
    try:
        async with engine.connect() as holder:
            await holder.execute(text("BEGIN"))
            await holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ROUTING_LOCK_KEY})
            routing = asyncio.create_task(route_waiting(app))
            await asyncio.sleep(0.3)  # the router now waits for the lock
            assert not routing.done()
            async with elsewhere() as session, session.begin():
                await session.execute(update(Partner).where(Partner.partner_id == "p2").values(active=False))
            await holder.execute(text("COMMIT"))
            await asyncio.wait_for(routing, 5)
    finally:
        await engine.dispose()
    (lead,) = await rows(app, Lead, Lead.lead_id == lead_id)
    assert lead.partner_id == "p1"  # not the partner deactivated while it waited
