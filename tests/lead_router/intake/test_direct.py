"""PostgreSQL: new leads stored by one autocommit statement (intake/direct.py), and what it leaves to the
transactional path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from services.lead_router.intake.direct import DirectIntake
from services.lead_router.intake.schemas import LeadIn
from services.lead_router.intake.service import ingest_many
from services.lead_router.intake.writer import Unit
from shared import outbox
from shared.config import Settings
from shared.db import create_engine
from shared.models import Lead, LeadEvent, OutboxMessage, WebhookReceipt, utcnow
from shared.observability import DB_STATEMENTS, DB_TRANSACTIONS
from shared.wakeup import OUTBOX_COMMITTED
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
    receipts = await rows(app, WebhookReceipt, WebhookReceipt.webhook_id == "msg_one_trip")
    assert [r.lead_id for r in receipts] == [lead_id]
    assert [e.type for e in await rows(app, LeadEvent, LeadEvent.lead_id == lead_id)] == ["lead.received"]
    events = await rows(app, OutboxMessage, OutboxMessage.key == lead_id)
    assert [m.type for m in events] == ["leadrouter.lead.received"]
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


async def test_a_webhook_id_stored_meanwhile_by_another_process_keeps_its_lead(
        client: httpx.AsyncClient, app: FastAPI, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Two deliveries of one webhook in two processes: while another transaction holds the receipt, the
    statement waits; when that commits, the receipt's insert fails the whole statement (its lead too), and the
    transactional path answers the delivery as a duplicate of the other process's lead."""
    caplog.set_level(logging.INFO, logger="services.lead_router.intake.writer")
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
    assert "with one statement failed" in caplog.text  # the statement's branch, not the receipt seen at its start


async def _until_waiting_for_a_lock(app: FastAPI) -> None:
    for _ in range(100):
        async with app.state.engine.connect() as conn:
            if await conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND wait_event_type = 'Lock' AND query LIKE 'WITH v AS%'")):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the intake statement never waited for the other transaction's receipt")


async def test_rows_are_those_the_transaction_writes(direct: DirectIntake, app: FastAPI) -> None:
    """The same body stored by the statement and by the transactional path: equal rows but for the ids, the
    external id and the email each was given."""
    stored = await direct.store([("generic", body("by-statement", email="a@example.com"), "msg_a")], now=utcnow(),
                                wake_relay=False)
    async with app.state.sessions() as session, session.begin():
        (accepted,) = await ingest_many(session, [("generic", body("by-session", email="b@example.com"), "msg_b")],
                                        settings=app.state.settings)
    ids = (stored.lead_ids[0], accepted.lead_id)
    own = {"lead_id", "external_id", "email_norm", "created_at", "updated_at", "event_id", "seq", "at", "webhook_id",
           "received_at", "id", "subject", "time", "key"}

    def same(values: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in values.items() if k not in own}
        for nested in ("contact", "data"):
            if isinstance(out.get(nested), dict):
                out[nested] = same({k: v for k, v in out[nested].items() if k != "email"})
        return out

    def columns(row: Any) -> dict[str, Any]:
        return {c.key: getattr(row, c.key) for c in row.__table__.columns}

    for model in (Lead, WebhookReceipt, LeadEvent):
        ours, theirs = [same(columns(r)) for lead_id in ids for r in await rows(app, model, model.lead_id == lead_id)]
        assert ours == theirs, model
    ours, theirs = [{**same(columns(m)), "payload": same(orjson.loads(m.payload))}
                    for lead_id in ids for m in await rows(app, OutboxMessage, OutboxMessage.key == lead_id)]
    assert ours == theirs


async def test_a_request_of_several_leads_keeps_its_place_in_the_batch(app: FastAPI) -> None:
    """A request of two leads, then one of a later delivery of the first: the first request's lead is stored,
    the later one merged into it (its values win). Sending the single lead ahead reversed that."""
    loop = asyncio.get_running_loop()
    first = Unit("generic", [body("e1", email="e1@example.com", score=10), body("e2", email="e2@example.com")],
                 [None, None], loop.create_future())
    later = Unit("generic", [body("e1", email="e1@example.com", score=50)], [None], loop.create_future())
    await app.state.ingest_writer._write([first, later])
    assert [item.duplicate for item in first.future.result()] == [False, False]
    assert [item.duplicate for item in later.future.result()] == [True]
    (lead,) = await rows(app, Lead, Lead.external_id == "e1")
    assert lead.score == 50


async def test_this_process_leading_relay_is_woken_in_process(direct: DirectIntake, db_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "_leading", True)
    monkeypatch.setattr(OUTBOX_COMMITTED, "event", asyncio.Event())
    async with relay_wakes(db_url) as heard:
        await direct.store([("generic", body("led"), None)], now=utcnow(), wake_relay=True)
        assert OUTBOX_COMMITTED.event is not None and OUTBOX_COMMITTED.event.is_set()
    assert heard == []


async def test_a_connection_that_died_is_not_handed_out_again(db_url: str, settings: Settings, app: FastAPI) -> None:
    """A failure SQLAlchemy did not see (the statement runs on the driver's connection) still takes a dead
    connection out of the pool: the next batch gets a live one."""
    engine = create_engine(db_url, pool_size=1)
    try:
        direct = DirectIntake(engine, settings)
        async with engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
            await conn.rollback()
        killer = await asyncpg.connect(db_url.replace("+asyncpg", ""))
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await killer.close()
        with pytest.raises(Exception):  # noqa: B017, PT011 - whichever error the driver raises for it
            await direct.store([("generic", body("after-death-1"), None)], now=utcnow(), wake_relay=False)
        stored = await direct.store([("generic", body("after-death-2"), None)], now=utcnow(), wake_relay=False)
        assert len(stored.inserted) == 1
    finally:
        await engine.dispose()



async def test_a_value_longer_than_its_column_is_refused_not_cut(direct: DirectIntake, app: FastAPI) -> None:
    with pytest.raises(asyncpg.StringDataRightTruncationError):
        await direct.store([("generic", body("long-hook"), "m" * 250)], now=utcnow(), wake_relay=False)
    assert await count_rows(app, Lead, Lead.external_id == "long-hook") == 0
