"""PostgreSQL: new leads stored by one autocommit statement (intake/direct.py), and what it leaves to the
transactional path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from services.lead_router.intake.direct import DirectIntake
from services.lead_router.intake.schemas import LeadIn
from shared.models import Lead, LeadEvent, OutboxMessage, WebhookReceipt, utcnow
from shared.observability import DB_STATEMENTS, DB_TRANSACTIONS
from tests.fixtures.builders import count_rows, lead_body, post_lead, rows
from tests.lead_router.routing.test_on_intake import relay_wakes


@pytest.fixture
def db_url(pg_url: str) -> str:
    return pg_url


@pytest.fixture
async def direct(app: FastAPI) -> AsyncIterator[DirectIntake]:
    yield DirectIntake(app.state.engine, app.state.settings)


def body(external_id: str, **overrides: object) -> LeadIn:
    return LeadIn.model_validate(lead_body(external_id=external_id, **overrides))


def counted() -> tuple[float, float]:
    return DB_STATEMENTS._value.get(), DB_TRANSACTIONS.labels("commit")._value.get()


async def test_a_new_lead_is_one_statement_and_no_transaction(client: httpx.AsyncClient, app: FastAPI) -> None:
    """The lead, its receipt, `lead.received` and timeline row: one round trip (it was BEGIN, two statements
    and COMMIT)."""
    assert app.state.ingest_writer.direct is not None
    await post_lead(client, external_id="warm-up")  # the source cache's first read
    before = counted()
    response = await post_lead(client, external_id="one-trip", email=" Dana.Wu@Example.com",
                               headers={"webhook-id": "msg_one_trip"})
    after = counted()
    assert response.status_code == 202, response.text
    assert (after[0] - before[0], after[1] - before[1]) == (1, 0)
    lead_id = response.json()["lead_id"]
    lead = (await rows(app, Lead, Lead.lead_id == lead_id))[0]
    assert (lead.external_id, lead.status, lead.email_norm) == ("one-trip", "received", "dana.wu@example.com")
    assert [r.lead_id for r in await rows(app, WebhookReceipt, WebhookReceipt.webhook_id == "msg_one_trip")] == [lead_id]
    assert [e.type for e in await rows(app, LeadEvent, LeadEvent.lead_id == lead_id)] == ["lead.received"]
    assert [m.type for m in await rows(app, OutboxMessage, OutboxMessage.key == lead_id)] == ["leadrouter.lead.received"]
    again = await post_lead(client, external_id="other", headers={"webhook-id": "msg_one_trip"})
    assert (again.status_code, again.json()["lead_id"], again.json()["duplicate"]) == (200, lead_id, True)


async def test_rows_follow_the_batch_order_and_known_leads_are_left(direct: DirectIntake, app: FastAPI) -> None:
    """A batch's events are published in its order; a lead already known (its external id, or the open lead
    of the same person) is not inserted, and nothing of it is written: the caller merges it."""
    first = await direct.store([("generic", body("known", email="known@example.com"), None)], now=utcnow(),
                               wake_relay=False)
    assert len(first.inserted) == 1
    items = [("generic", body(f"order-{i}", email=f"order-{i}@example.com"), None) for i in range(5)]
    items[2] = ("generic", body("known", email="someone@example.com"), None)
    items[3] = ("generic", body("new-id", email="KNOWN@example.com"), None)
    stored = await direct.store(items, now=utcnow(), wake_relay=False)
    expected = [lead_id for i, lead_id in enumerate(stored.lead_ids) if i not in (2, 3)]
    assert stored.inserted == set(expected)
    assert await count_rows(app, Lead) == 4
    published = [m.key for m in await rows(app, OutboxMessage, order_by=OutboxMessage.id)]
    assert published == [*first.inserted, *expected]
    timeline = [e.lead_id for e in await rows(app, LeadEvent, order_by=LeadEvent.seq)]
    assert timeline == published


async def test_it_wakes_another_process_relay_only_when_asked_and_only_for_a_lead(direct: DirectIntake,
                                                                                   db_url: str) -> None:
    async with relay_wakes(db_url) as heard:
        await direct.store([("generic", body("quiet"), None)], now=utcnow(), wake_relay=False)
        await direct.store([("generic", body("quiet"), None)], now=utcnow(), wake_relay=True)  # known: no lead
        await asyncio.sleep(0.2)
        assert heard == []
        await direct.store([("generic", body("loud"), None)], now=utcnow(), wake_relay=True)
    assert len(heard) == 1


async def test_a_webhook_id_stored_meanwhile_by_another_process_keeps_its_lead(client: httpx.AsyncClient,
                                                                               app: FastAPI, db_url: str) -> None:
    """Two deliveries of one webhook in two processes: while another transaction holds the receipt, the
    statement waits; when that commits, the receipt's insert fails the whole statement (its lead too), and the
    transactional path answers the delivery as a duplicate of the other process's lead."""
    other = await asyncpg.connect(db_url.replace("+asyncpg", ""))
    try:
        async with other.transaction():
            await other.execute("INSERT INTO leads (lead_id, source, external_id, status, company, contact, "
                                "created_at, updated_at) VALUES ('00000000-0000-4000-8000-0000000000aa', 'generic', "
                                "'theirs', 'received', '{}', '{}', now(), now())")
            await other.execute("INSERT INTO webhook_receipts (source, webhook_id, lead_id, received_at) VALUES "
                                "('generic', 'msg_race', '00000000-0000-4000-8000-0000000000aa', now())")
            posting = asyncio.create_task(post_lead(client, external_id="ours", headers={"webhook-id": "msg_race"}))
            await _until_waiting_for_a_lock(app)
        response = await asyncio.wait_for(posting, 10)
    finally:
        await other.close()
    assert (response.status_code, response.json()["lead_id"], response.json()["duplicate"]) == (
        200, "00000000-0000-4000-8000-0000000000aa", True)
    assert await count_rows(app, Lead, Lead.external_id == "ours") == 0
    assert await count_rows(app, OutboxMessage) == 0


async def _until_waiting_for_a_lock(app: FastAPI) -> None:
    for _ in range(100):
        async with app.state.engine.connect() as conn:
            if await conn.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the intake statement never waited for the other transaction's receipt")

